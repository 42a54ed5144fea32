using System.Buffers.Binary;
using System.Security.Cryptography;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Vfs;

/// <summary>
/// A write-ahead log. Frame bodies (page images) are sealed, bound to their byte offset; the WAL
/// header and frame headers stay as SQLite wrote them.
/// <code>
///  [ WAL header 32 ][ frame header 24 | body P ][ frame header 24 | body P ] ...
///  body k starts at 32 + k*(24+P) + 24
/// </code>
/// </summary>
/// <remarks>
/// Reading a body alone (a committed frame, located through the wal-index) must authenticate, or
/// the read fails with the page number. Reading whole frames is WAL recovery: a frame whose body
/// does not authenticate (torn by a power cut, or planted) is handed over with its salt inverted,
/// so SQLite rejects it for certain and recovery stops at the last good frame, as it does for a
/// torn frame of a plain WAL. A planted plaintext frame with a valid checksum is never applied.
/// </remarks>
internal sealed unsafe class WalHandler : FileHandler
{
    private const int WalHeader = 32;
    private const int FrameHeader = 24;

    private readonly DatabaseCrypto _crypto;
    private readonly byte[] _sealed;
    private readonly byte[] _plain;

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
            return base.Write(buffer, amount, offset);
        }

        _crypto.Seal(PageFileKind.Wal, offset, new ReadOnlySpan<byte>(buffer, amount), _sealed);
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
            if (offset <= body && end >= body + P)
            {
                // The read holds the whole body: open it in place.
                var inPlace = output.Slice((int)(body - offset), P);
                if (_crypto.TryOpen(PageFileKind.Wal, body, inPlace, inPlace))
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
            if (readRc != SqliteNative.SQLITE_OK || !_crypto.TryOpen(PageFileKind.Wal, body, _sealed, _plain))
            {
                return readRc != SqliteNative.SQLITE_OK ? readRc : Tamper(body);
            }

            var from = Math.Max(offset, body);
            var to = Math.Min(end, body + P);
            _plain.AsSpan((int)(from - body), (int)(to - from)).CopyTo(output[(int)(from - offset)..]);
        }

        return rc;
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
