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
/// <para>SQLite writes the 24-byte frame header just before the body, in a separate write: it is
/// remembered. A body written alone (a page changed again in the same transaction), read alone (a
/// committed frame located through the wal-index, or a checkpoint) or in part has its frame header
/// read back from the file: one 16-byte read per body. Reading whole frames is WAL recovery, and
/// the header is in the buffer.</para>
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
    private readonly byte[] _plain;

    // The frame header this handle wrote last (its page number and salts bind the body that follows).
    private readonly byte[] _lastHeader = new byte[16];
    private long _lastHeaderOffset = -1;

    public WalHandler(SqliteFile* underlying, string? path, DatabaseCrypto crypto) : base(underlying, path)
    {
        _crypto = crypto;
        _sealed = GC.AllocateUninitializedArray<byte>(crypto.PageSize, pinned: true);
        _plain = GC.AllocateUninitializedArray<byte>(crypto.PageSize, pinned: true);
    }

    private int P => _crypto.PageSize;

    private long FrameSize => FrameHeader + P;

    private bool IsBodyOffset(long offset) => offset >= WalHeader + FrameHeader && (offset - WalHeader) % FrameSize == FrameHeader;

    public override int Write(byte* buffer, int amount, long offset)
    {
        if (amount != P || !IsBodyOffset(offset))
        {
            if (amount >= 16 && offset >= WalHeader && (offset - WalHeader) % FrameSize == 0)
            {
                new ReadOnlySpan<byte>(buffer, 16).CopyTo(_lastHeader);
                _lastHeaderOffset = offset;
            }

            return base.Write(buffer, amount, offset);
        }

        Span<byte> binding = stackalloc byte[PageTrailer.BindingSize];
        int bindRc;
        if (_lastHeaderOffset == offset - FrameHeader)
        {
            bindRc = Bind(binding, _lastHeader);
            _lastHeaderOffset = -1;
        }
        else
        {
            bindRc = ReadHeaderBinding(binding, offset);
        }

        if (bindRc != SqliteNative.SQLITE_OK)
        {
            return bindRc;
        }

        _crypto.Seal(PageFileKind.Wal, offset, new ReadOnlySpan<byte>(buffer, amount), _sealed, binding);
        return WriteRaw(_sealed, offset);
    }

    public override int Read(byte* buffer, int amount, long offset)
    {
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
                var headerRc = ReadHeaderBinding(binding, body);
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
        _lastHeaderOffset = -1;
        return base.Truncate(size);
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

    // The binding of the body at bodyOffset, from its frame header on disk (SQLITE_IOERR_SHORT_READ: no such frame).
    private int ReadHeaderBinding(Span<byte> binding, long bodyOffset)
    {
        Span<byte> header = stackalloc byte[16];
        var rc = ReadRaw(header, bodyOffset - FrameHeader);
        return rc == SqliteNative.SQLITE_OK ? Bind(binding, header) : rc;
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
