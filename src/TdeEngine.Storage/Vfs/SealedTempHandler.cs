using System.Security.Cryptography;
using TdeEngine.Kms.Crypto;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Vfs;

/// <summary>
/// Temporary files (statement journals, temp databases and their journals, VACUUM's transient
/// database). They live only while the connection needs them, so they get a random key of their
/// own, held only in memory: the file is a sequence of 4 KiB cells, each sealed with AES-256-GCM,
/// and the nonces and tags stay in memory. Reads and writes of any size and offset are served by
/// opening, patching and resealing cells.
/// </summary>
internal sealed unsafe class SealedTempHandler : FileHandler
{
    private const int Cell = 4096;
    private const int NonceSize = 12;
    private const int TagSize = 16;

    private readonly IPageCipher _cipher;
    private readonly byte[] _sealed = GC.AllocateUninitializedArray<byte>(Cell, pinned: true);
    private readonly byte[] _plain = GC.AllocateUninitializedArray<byte>(Cell, pinned: true);
    private byte[] _meta = new byte[64 * (NonceSize + TagSize)];
    private bool[] _present = new bool[64];
    private long _size;

    public SealedTempHandler(SqliteFile* underlying, string? path) : base(underlying, path)
    {
        Span<byte> key = stackalloc byte[32];
        FastRandom.Fill(key);
        _cipher = PageCipher.Create(PageCipherSuite.Aes256Gcm, key);
        CryptographicOperations.ZeroMemory(key);
    }

    public override int Read(byte* buffer, int amount, long offset)
    {
        var output = new Span<byte>(buffer, amount);
        var end = offset + amount;
        for (var cell = offset / Cell; cell * Cell < end; cell++)
        {
            var start = cell * Cell;
            var from = (int)Math.Max(offset - start, 0);
            var to = (int)Math.Min(end - start, Cell);
            var target = output.Slice((int)(start + from - offset), to - from);
            var rc = LoadCell(cell);
            if (rc != SqliteNative.SQLITE_OK)
            {
                return rc;
            }

            _plain.AsSpan(from, to - from).CopyTo(target);
        }

        if (end > _size)
        {
            var valid = (int)Math.Max(0, _size - offset);
            output[valid..].Clear();
            return SqliteNative.SQLITE_IOERR_SHORT_READ;
        }

        return SqliteNative.SQLITE_OK;
    }

    public override int Write(byte* buffer, int amount, long offset)
    {
        var input = new ReadOnlySpan<byte>(buffer, amount);
        var end = offset + amount;
        for (var cell = offset / Cell; cell * Cell < end; cell++)
        {
            var start = cell * Cell;
            var from = (int)Math.Max(offset - start, 0);
            var to = (int)Math.Min(end - start, Cell);
            if (from != 0 || to != Cell)
            {
                var rc = LoadCell(cell);
                if (rc != SqliteNative.SQLITE_OK)
                {
                    return rc;
                }
            }

            input.Slice((int)(start + from - offset), to - from).CopyTo(_plain.AsSpan(from));
            var written = StoreCell(cell);
            if (written != SqliteNative.SQLITE_OK)
            {
                return written;
            }
        }

        _size = Math.Max(_size, end);
        return SqliteNative.SQLITE_OK;
    }

    public override int Truncate(long size)
    {
        _size = Math.Min(_size, size);
        var cells = (size + Cell - 1) / Cell;
        var tail = (int)(size % Cell);
        if (tail != 0 && cells - 1 < _present.Length && _present[cells - 1])
        {
            // Bytes past the new end must read as zeros if the file grows again, as with a plain file.
            var rc = LoadCell(cells - 1);
            if (rc != SqliteNative.SQLITE_OK)
            {
                return rc;
            }

            Array.Clear(_plain, tail, Cell - tail);
            rc = StoreCell(cells - 1);
            if (rc != SqliteNative.SQLITE_OK)
            {
                return rc;
            }
        }

        for (var i = cells; i < _present.Length; i++)
        {
            _present[i] = false;
        }

        return Inner->xTruncate(Underlying, cells * Cell);
    }

    public override int FileSize(long* size)
    {
        *size = _size;
        return SqliteNative.SQLITE_OK;
    }

    // Leaves the plaintext of the cell in _plain (zeros for a cell never written).
    private int LoadCell(long cell)
    {
        if (cell >= _present.Length || !_present[cell])
        {
            Array.Clear(_plain);
            return SqliteNative.SQLITE_OK;
        }

        var rc = ReadRaw(_sealed, cell * Cell);
        if (rc != SqliteNative.SQLITE_OK)
        {
            return rc;
        }

        var meta = _meta.AsSpan((int)cell * (NonceSize + TagSize), NonceSize + TagSize);
        Span<byte> aad = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(aad, cell);
        if (!_cipher.Open(meta[..NonceSize], aad, _sealed, meta[NonceSize..], _plain))
        {
            return TdeVfs.Fail(new TdeStorageException(TdeStorageException.Codes.PageAuthenticationFailed,
                $"A temporary file of SQLite was altered on disk while in use (cell {cell}).", Path), SqliteNative.SQLITE_IOERR_DATA);
        }

        return SqliteNative.SQLITE_OK;
    }

    private int StoreCell(long cell)
    {
        if (cell >= _present.Length)
        {
            var grown = (int)Math.Max(cell + 1, _present.Length * 2L);
            Array.Resize(ref _present, grown);
            Array.Resize(ref _meta, grown * (NonceSize + TagSize));
        }

        var meta = _meta.AsSpan((int)cell * (NonceSize + TagSize), NonceSize + TagSize);
        FastRandom.Fill(meta[..NonceSize]);
        Span<byte> aad = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(aad, cell);
        _cipher.Seal(meta[..NonceSize], aad, _plain, _sealed, meta[NonceSize..]);
        _present[cell] = true;
        return WriteRaw(_sealed, cell * Cell);
    }

    protected override void Release()
    {
        _cipher.Dispose();
        CryptographicOperations.ZeroMemory(_plain);
    }
}
