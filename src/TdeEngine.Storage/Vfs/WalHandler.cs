using System.Buffers.Binary;
using System.Security.Cryptography;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Vfs;

/// <summary>
/// A write-ahead log. Frame bodies (page images) are sealed, bound to their byte offset and to the
/// page number and salts of their frame header; the WAL header and frame headers stay as SQLite
/// wrote them.
/// <code>
///  [ WAL header 32 ][ frame header 24 | body P ][ frame header 24 | body P ] ...
///  frame header: pgno 4 | commit size 4 | salt-1 4 | salt-2 4 | checksum 8
///  body k starts at 32 + k*(24+P) + 24
/// </code>
/// </summary>
/// <remarks>
/// <para>SQLite's frame checksum is linear, so it can be recomputed without the plaintext: without
/// the page number in the AAD, two frames' page numbers could be swapped undetected. The salts
/// change with every WAL generation (each restart of the log), so a frame of an older generation
/// copied to the same offset with today's salts written into its header no longer authenticates.</para>
/// <para>SQLite writes the 24-byte frame header just before the body, in a separate write: each
/// header a handle writes is remembered, and binds the body written after it or written again
/// into that frame within the transaction. A body read alone (a committed frame located through
/// the wal-index, or a checkpoint) is read together with its frame header, in one read, and bound
/// to the WAL header's salts (see <see cref="BindToday"/>); a body read in part has its frame
/// header read back from the file. Reading whole frames is WAL recovery, and the header is in the
/// buffer.</para>
/// <para>Reading a body alone must authenticate, or the read fails with the page number. Reading
/// whole frames is WAL recovery: a frame whose body does not authenticate (torn by a power cut, or
/// planted) is handed over with its salt inverted, so SQLite rejects it for certain and recovery
/// stops at the last good frame, as it does for a torn frame of a plain WAL. A planted plaintext
/// frame with a valid checksum is never applied.</para>
/// </remarks>
internal sealed unsafe class WalHandler : FileHandler
{
    private const int WalHeader = 32;
    private const int FrameHeader = 24;

    private readonly DatabaseCrypto _crypto;
    private readonly byte[] _sealed;
    private readonly byte[] _frame;   // a frame header and its sealed body, read together
    private readonly byte[] _plain;

    // The page number and salts of each frame header this handle wrote, by frame index (page 0:
    // none remembered). Used only to seal a body SQLite writes: it writes a body only into a frame
    // whose header it wrote just before or, rewriting a page changed again within one transaction,
    // into a frame of that same transaction, whose header this handle wrote in that transaction
    // (only the connection holding the WAL write lock writes frames). Reads bind from the header on
    // disk: what another connection wrote since is never taken from here.
    private (uint Page, uint Salt1, uint Salt2)[] _written = [];

    // The salts of the last frame header this handle wrote with salts. SQLite writes frames with
    // zero salts only after rewriting a frame within a transaction, and the first frame of every
    // transaction carries the WAL's salts, so these are the salts of the transaction being written.
    private (uint Salt1, uint Salt2)? _writtenSalts;

    // The WAL header's salts as read for a body read alone, and the connection's count of
    // wal-index lock calls when they were read (-1: none). They are used again only while that
    // count has not moved: the connection has held the same locks since, and a reader using frames
    // keeps the WAL from being restarted (by anyone). A WAL header this handle writes, or a
    // truncation, forgets them.
    private readonly MainDatabaseHandler _connection;
    private ulong _todaySalts;   // salt-1 in the high half, salt-2 in the low, as on disk
    private long _todayEpoch = -1;

    // Whether _todaySalts equalled the (non-zero) salts of the wal-index when they were read.
    private bool _todayAgreed;

    public WalHandler(SqliteFile* underlying, string? path, DatabaseCrypto crypto, MainDatabaseHandler connection) : base(underlying, path)
    {
        _crypto = crypto;
        _connection = connection;
        _sealed = GC.AllocateUninitializedArray<byte>(crypto.PageSize, pinned: true);
        _frame = GC.AllocateUninitializedArray<byte>(FrameHeader + crypto.PageSize, pinned: true);
        _plain = GC.AllocateUninitializedArray<byte>(crypto.PageSize, pinned: true);
    }

    private int P => _crypto.PageSize;

    // Opens the body at bodyOffset, read into _frame with its frame header, into output.
    private int OpenBody(Span<byte> output, long bodyOffset)
    {
        Span<byte> binding = stackalloc byte[PageTrailer.BindingSize];
        var bindRc = BindToday(binding, _frame.AsSpan(0, 16));
        if (bindRc != SqliteNative.SQLITE_OK)
        {
            return bindRc;
        }

        if (_crypto.TryOpen(PageFileKind.Wal, bodyOffset, _frame.AsSpan(FrameHeader), output, binding))
        {
            return SqliteNative.SQLITE_OK;
        }

        output.Clear();
        return Tamper(bodyOffset);
    }

    private long FrameSize => FrameHeader + P;

    private bool IsBodyOffset(long offset) => offset >= WalHeader + FrameHeader && (offset - WalHeader) % FrameSize == FrameHeader;

    public override int Write(byte* buffer, int amount, long offset)
    {
        if (amount != P || !IsBodyOffset(offset))
        {
            Remember(new ReadOnlySpan<byte>(buffer, amount), offset);
            return base.Write(buffer, amount, offset);
        }

        Span<byte> binding = stackalloc byte[PageTrailer.BindingSize];
        var frame = (offset - WalHeader - FrameHeader) / FrameSize;
        if (frame < _written.Length && _written[frame] is { Page: not 0 } written &&
            ((written.Salt1 | written.Salt2) != 0 ? (written.Salt1, written.Salt2) : _writtenSalts) is { } salts)
        {
            // Zero salts in the header this handle wrote: those of the transaction being written.
            PageTrailer.WriteBinding(binding, written.Page, salts.Salt1, salts.Salt2);
        }
        else
        {
            var bindRc = ReadHeaderBinding(binding, offset);
            if (bindRc != SqliteNative.SQLITE_OK)
            {
                return bindRc;
            }
        }

        _crypto.Seal(PageFileKind.Wal, offset, new ReadOnlySpan<byte>(buffer, amount), _sealed, binding);
        return WriteRaw(_sealed, offset);
    }

    public override int Read(byte* buffer, int amount, long offset)
    {
        if (amount == P && IsBodyOffset(offset))
        {
            // A body alone (a page located through the wal-index, or a checkpoint): its frame
            // header and body in one read.
            var frameRc = ReadRaw(_frame, offset - FrameHeader);
            if (frameRc == SqliteNative.SQLITE_OK)
            {
                return OpenBody(new Span<byte>(buffer, amount), offset);
            }

            if (frameRc != SqliteNative.SQLITE_IOERR_SHORT_READ)
            {
                return frameRc;
            }

            // Past the end of the file: the general path below answers as for any short read.
        }

        var rc = base.Read(buffer, amount, offset);
        if (rc != SqliteNative.SQLITE_OK && rc != SqliteNative.SQLITE_IOERR_SHORT_READ)
        {
            return rc;
        }

        var output = new Span<byte>(buffer, amount);
        var end = offset + amount;
        var first = Math.Max(0, (offset - WalHeader - FrameHeader) / FrameSize);
        Span<byte> binding = stackalloc byte[PageTrailer.BindingSize];
        for (var k = first; ; k++)
        {
            var body = WalHeader + (k * FrameSize) + FrameHeader;
            if (body >= end)
            {
                break;
            }

            if (body + P <= offset)
            {
                continue;
            }

            var wholeFrame = offset <= body - FrameHeader && end >= body + P;
            if (wholeFrame)
            {
                var bindRc = Bind(binding, output.Slice((int)(body - FrameHeader - offset), 16));
                if (bindRc != SqliteNative.SQLITE_OK)
                {
                    return bindRc;
                }
            }
            else
            {
                var headerRc = ReadHeaderBinding(binding, body, today: true);
                if (headerRc == SqliteNative.SQLITE_IOERR_SHORT_READ)
                {
                    output.Slice((int)(Math.Max(offset, body) - offset), (int)(Math.Min(end, body + P) - Math.Max(offset, body))).Clear();
                    continue;   // no frame here: beyond the end of the file
                }

                if (headerRc != SqliteNative.SQLITE_OK)
                {
                    return headerRc;
                }
            }

            if (offset <= body && end >= body + P)
            {
                // The read holds the whole body: open it in place.
                var inPlace = output.Slice((int)(body - offset), P);
                if (_crypto.TryOpen(PageFileKind.Wal, body, inPlace, inPlace, binding))
                {
                    continue;
                }

                if (wholeFrame)
                {
                    // Recovery: make the frame invalid beyond doubt (salt-1, bytes 8..11 of the frame header).
                    inPlace.Clear();
                    var salt = output.Slice((int)(body - FrameHeader - offset) + 8, 4);
                    for (var i = 0; i < salt.Length; i++)
                    {
                        salt[i] = (byte)~salt[i];
                    }

                    continue;
                }

                if (rc == SqliteNative.SQLITE_IOERR_SHORT_READ)
                {
                    inPlace.Clear();   // beyond the end of the file: zeros, as SQLite expects
                    continue;
                }

                inPlace.Clear();
                return Tamper(body);
            }

            // A partial body: open the whole body from disk and copy the overlap.
            var readRc = ReadRaw(_sealed, body);
            if (readRc != SqliteNative.SQLITE_OK || !_crypto.TryOpen(PageFileKind.Wal, body, _sealed, _plain, binding))
            {
                return readRc != SqliteNative.SQLITE_OK ? readRc : Tamper(body);
            }

            var from = Math.Max(offset, body);
            var to = Math.Min(end, body + P);
            _plain.AsSpan((int)(from - body), (int)(to - from)).CopyTo(output[(int)(from - offset)..]);
        }

        return rc;
    }

    public override int Truncate(long size)
    {
        Forget();
        return base.Truncate(size);
    }

    // Notes the frame headers (and a new WAL header) in a write that is not a body.
    private void Remember(ReadOnlySpan<byte> data, long offset)
    {
        if (offset == 0 && data.Length >= 24)
        {
            // A new WAL header: the log restarts with new salts, and every frame is written anew.
            Forget();
            return;
        }

        if (data.Length < 16 || offset < WalHeader || (offset - WalHeader) % FrameSize != 0)
        {
            return;
        }

        var frame = (offset - WalHeader) / FrameSize;
        if (frame >= _written.Length)
        {
            Array.Resize(ref _written, (int)Math.Max(frame + 1, Math.Max(64, _written.Length * 2L)));
        }

        var page = BinaryPrimitives.ReadUInt32BigEndian(data);
        var salt1 = BinaryPrimitives.ReadUInt32BigEndian(data[8..]);
        var salt2 = BinaryPrimitives.ReadUInt32BigEndian(data[12..]);
        _written[frame] = (page, salt1, salt2);
        if ((salt1 | salt2) != 0)
        {
            _writtenSalts = (salt1, salt2);
        }
    }

    private void Forget()
    {
        _todayEpoch = -1;
        _todayAgreed = false;
        Array.Clear(_written);
        _writtenSalts = null;
    }

    // AAD binding from a frame header's first 16 bytes: the page number, and the salts of the WAL
    // generation. A frame header's salts are those of the WAL header, except while SQLite leaves
    // them zero: a frame written by a transaction that rewrites frames (a page spilled from the
    // cache and changed again) carries zero salt and checksum until the commit rewrites its
    // header. Then the salts are read from the WAL header (offset 16), which holds them already.
    private int Bind(Span<byte> binding, ReadOnlySpan<byte> frameHeader)
    {
        Span<byte> salts = stackalloc byte[8];
        if (frameHeader.Slice(8, 8).IndexOfAnyExcept((byte)0) >= 0)
        {
            frameHeader.Slice(8, 8).CopyTo(salts);
        }
        else
        {
            var rc = ReadRaw(salts, 16);
            if (rc != SqliteNative.SQLITE_OK)
            {
                return rc == SqliteNative.SQLITE_IOERR_SHORT_READ ? SqliteNative.SQLITE_IOERR_READ : rc;
            }
        }

        PageTrailer.WriteBinding(binding, BinaryPrimitives.ReadUInt32BigEndian(frameHeader),
            BinaryPrimitives.ReadUInt32BigEndian(salts), BinaryPrimitives.ReadUInt32BigEndian(salts[4..]));
        return SqliteNative.SQLITE_OK;
    }

    // The binding of a body read outside recovery: the page number of its frame header and the salts
    // of the WAL header. A frame SQLite reads alone (through the wal-index, or to checkpoint it) is a
    // frame of today's generation, so the WAL header holds its salts (SQLite writes the WAL header of a
    // new generation before its first frame, and restarts the log only when no reader uses a frame).
    // Taking the frame header's salts instead would let a frame of an older generation, copied to
    // the same offset with its own header, authenticate as today's frame under a live wal-index.
    // The salts bound are always the WAL header's: the wal-index (-shm) is an unauthenticated file,
    // and binding to its salts whenever a frame header carries them would let an older-generation
    // frame pass once the -shm's salts are edited to match, while today's frames still passed
    // through the WAL header (a frame of another generation mixed into today's). Its salts only
    // say when the WAL header's, read once, may be used again without a system call (see below).
    private int BindToday(Span<byte> binding, ReadOnlySpan<byte> frameHeader)
    {
        // The WAL header's salts are used again (1) while the connection's count of wal-index lock
        // calls has not moved (a reader using frames keeps the WAL from being restarted), or (2)
        // when they were equal to the wal-index's salts when read and the wal-index still holds
        // those salts: SQLite gives the wal-index a new generation's salts when it restarts the
        // log (before any frame of it is written), and the WAL header differs from the wal-index
        // only during a write transaction that starts a new WAL (this handle writes that header,
        // which forgets them) or after one rolled back, with no committed frame to read. A
        // wal-index whose salts are zero (built over an empty WAL) never agrees with a WAL header.
        Span<byte> salts = stackalloc byte[8];
        var mapped = _connection.TryReadWalIndexSalts(salts);
        var indexSalts = mapped ? BinaryPrimitives.ReadUInt64BigEndian(salts) : 0;
        var epoch = _connection.ShmLockCalls;
        var agreed = mapped && _todayAgreed && _todaySalts == indexSalts;
        if (!agreed && _todayEpoch != epoch)
        {
            var rc = ReadRaw(salts, 16);
            if (rc != SqliteNative.SQLITE_OK)
            {
                return rc == SqliteNative.SQLITE_IOERR_SHORT_READ ? SqliteNative.SQLITE_IOERR_READ : rc;
            }

            _todaySalts = BinaryPrimitives.ReadUInt64BigEndian(salts);
            _todayEpoch = epoch;
            _todayAgreed = mapped && _todaySalts == indexSalts && _todaySalts != 0;
        }

        PageTrailer.WriteBinding(binding, BinaryPrimitives.ReadUInt32BigEndian(frameHeader), (uint)(_todaySalts >> 32), (uint)_todaySalts);
        return SqliteNative.SQLITE_OK;
    }

    // The binding of the body at bodyOffset, from its frame header on disk (SQLITE_IOERR_SHORT_READ: no
    // such frame); today: with the salts of the WAL header (see BindToday).
    private int ReadHeaderBinding(Span<byte> binding, long bodyOffset, bool today = false)
    {
        Span<byte> header = stackalloc byte[16];
        var rc = ReadRaw(header, bodyOffset - FrameHeader);
        return rc != SqliteNative.SQLITE_OK ? rc : today ? BindToday(binding, header) : Bind(binding, header);
    }

    private int Tamper(long bodyOffset)
    {
        Span<byte> header = stackalloc byte[4];
        var page = ReadRaw(header, bodyOffset - FrameHeader) == SqliteNative.SQLITE_OK ? BinaryPrimitives.ReadUInt32BigEndian(header) : 0;
        return TdeVfs.Fail(new TdeStorageException(TdeStorageException.Codes.PageAuthenticationFailed,
            $"Page {page} in WAL frame {(bodyOffset - WalHeader - FrameHeader) / FrameSize} of '{Path}' failed authentication: the WAL was altered. Restore the database from a backup.",
            Path, page), SqliteNative.SQLITE_IOERR_DATA);
    }

    protected override void Release() => CryptographicOperations.ZeroMemory(_plain);
}
