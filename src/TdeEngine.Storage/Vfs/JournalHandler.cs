using System.Security.Cryptography;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Vfs;

/// <summary>
/// A rollback journal. Its page images (the writes of exactly one page) are sealed, bound to their
/// byte offset; record headers, checksums and journal headers stay as SQLite wrote them (they hold
/// page numbers and counts, no user data).
/// </summary>
/// <remarks>
/// A journal header can also be one page long (when the sector size equals the page size); it is
/// recognised by the journal magic it starts with, which no page image can start with. On reading,
/// an image that does not authenticate (a torn write at a crash) is handed to SQLite as it is on
/// disk, so SQLite's own record checksum rejects it exactly as it rejects a torn plain record.
/// </remarks>
internal sealed unsafe class JournalHandler : FileHandler
{
    private static ReadOnlySpan<byte> JournalMagic => [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

    private readonly DatabaseCrypto _crypto;
    private readonly byte[] _buffer;

    public JournalHandler(SqliteFile* underlying, string? path, DatabaseCrypto crypto) : base(underlying, path)
    {
        _crypto = crypto;
        _buffer = GC.AllocateUninitializedArray<byte>(crypto.PageSize, pinned: true);
    }

    public override int Write(byte* buffer, int amount, long offset)
    {
        var input = new ReadOnlySpan<byte>(buffer, amount);
        if (amount != _crypto.PageSize || input.StartsWith(JournalMagic))
        {
            return base.Write(buffer, amount, offset);
        }

        _crypto.Seal(PageFileKind.RollbackJournal, offset, input, _buffer);
        return WriteRaw(_buffer, offset);
    }

    public override int Read(byte* buffer, int amount, long offset)
    {
        var rc = base.Read(buffer, amount, offset);
        if (rc != SqliteNative.SQLITE_OK || amount != _crypto.PageSize)
        {
            return rc;
        }

        var onDisk = new Span<byte>(buffer, amount);
        onDisk.CopyTo(_buffer);
        if (!_crypto.TryOpen(PageFileKind.RollbackJournal, offset, _buffer, onDisk))
        {
            _buffer.CopyTo(onDisk);
        }

        return rc;
    }

    protected override void Release() => CryptographicOperations.ZeroMemory(_buffer);
}
