using System.Security.Cryptography;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Vfs;

/// <summary>
/// A rollback journal. Its page images (the writes of exactly one page) are sealed, bound to their
/// byte offset; record headers, checksums and journal headers stay as SQLite wrote them (they hold
/// page numbers and counts, no user data).
/// </summary>
/// <remarks>
/// <para>A journal header can also be one page long (when the sector size equals the page size); it
/// is recognised by the journal magic it starts with, which no page image can start with.</para>
/// <para>An image that does not authenticate fails the read (<c>SQLITE_IOERR_DATA</c>) rather than
/// being handed to SQLite: SQLite skips its record checksum when it rolls back a savepoint, and a
/// plaintext record planted in a journal would carry a valid checksum. With SQLite's default
/// synchronous setting every record a hot journal counts was synced before the database was
/// touched, so an image that fails there was altered, not torn.</para>
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
        if (!_crypto.TryOpen(PageFileKind.RollbackJournal, offset, onDisk, onDisk))
        {
            return TdeVfs.Fail(new TdeStorageException(TdeStorageException.Codes.PageAuthenticationFailed,
                $"The page image at offset {offset} of the rollback journal '{Path}' failed authentication: the journal was altered or belongs to another database. Move the journal aside only if you accept losing the interrupted transaction's rollback.",
                Path), SqliteNative.SQLITE_IOERR_DATA);
        }

        return rc;
    }

    protected override void Release() => CryptographicOperations.ZeroMemory(_buffer);
}
