using System.Buffers.Binary;
using System.Security.Cryptography;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Vfs;

/// <summary>
/// A rollback journal. Its page images (the writes of exactly one page) are sealed, bound to their
/// byte offset, to the page number SQLite recorded for them, and to the random checksum initializer
/// (cksumInit) of the journal header at offset 0; record headers, checksums and journal headers stay
/// as SQLite wrote them (they hold page numbers and counts, no user data).
/// <code>
///  [ header: magic 8 | nRec 4 | cksumInit 4 | ... (one sector) ][ pgno 4 | image P | cksum 4 ] ...
///                              ^ bound into every image's AAD      ^ bound into the next image's AAD
/// </code>
/// </summary>
/// <remarks>
/// <para>SQLite writes a record as three writes: the 4-byte page number at <c>x</c>, the image at
/// <c>x+4</c>, the checksum after it; it plays a record back by reading the page number, then the
/// image. The page number is remembered from the 4-byte write or read just before the image, or
/// read back from the file when that was not the call before. Without it in the AAD, swapping two
/// records' page numbers (which SQLite's checksum, computed over the image only, does not notice)
/// made a hot rollback write each image into the other page.</para>
/// <para>cksumInit is fresh random bytes for every journal SQLite starts, so an image from an older
/// journal of the same database, at the same offset and for the same page, no longer authenticates.
/// A journal may hold later headers (after a mid-transaction sync); their images are still bound to
/// the header at offset 0, which SQLite writes before any record and plays back first.</para>
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
    private const int CksumInitOffset = 12;

    private static ReadOnlySpan<byte> JournalMagic => [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];

    private readonly DatabaseCrypto _crypto;
    private readonly byte[] _buffer;

    // The last 4-byte write or read (a record's page number, when an image follows at +4).
    private long _lastWordOffset = -1;
    private uint _lastWord;

    // cksumInit of the header at offset 0 as this handle last wrote it; null when unknown.
    private uint? _cksumInit;

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
            Remember(input, offset);
            return base.Write(buffer, amount, offset);
        }

        Span<byte> binding = stackalloc byte[PageTrailer.BindingSize];
        var rc = Binding(binding, offset, _cksumInit);
        if (rc != SqliteNative.SQLITE_OK)
        {
            return rc;
        }

        _crypto.Seal(PageFileKind.RollbackJournal, offset, input, _buffer, binding);
        return WriteRaw(_buffer, offset);
    }

    public override int Read(byte* buffer, int amount, long offset)
    {
        var rc = base.Read(buffer, amount, offset);
        if (rc != SqliteNative.SQLITE_OK || amount != _crypto.PageSize)
        {
            if (rc == SqliteNative.SQLITE_OK && amount == 4)
            {
                _lastWordOffset = offset;
                _lastWord = BinaryPrimitives.ReadUInt32BigEndian(new ReadOnlySpan<byte>(buffer, 4));
            }

            return rc;
        }

        // cksumInit is read from the file here: the header at offset 0 is what SQLite just played back
        // (hot journal), or what this handle wrote (savepoint rollback).
        Span<byte> binding = stackalloc byte[PageTrailer.BindingSize];
        var bindingRc = Binding(binding, offset, cksumInit: null);
        var onDisk = new Span<byte>(buffer, amount);
        if (bindingRc != SqliteNative.SQLITE_OK)
        {
            onDisk.Clear();
            return bindingRc;
        }

        if (!_crypto.TryOpen(PageFileKind.RollbackJournal, offset, onDisk, onDisk, binding))
        {
            return TdeVfs.Fail(new TdeStorageException(TdeStorageException.Codes.PageAuthenticationFailed,
                $"The page image at offset {offset} of the rollback journal '{Path}' failed authentication: the journal was altered, its records were moved or renumbered, or it belongs to another journal or database. Move the journal aside only if you accept losing the interrupted transaction's rollback.",
                Path), SqliteNative.SQLITE_IOERR_DATA);
        }

        return rc;
    }

    public override int Truncate(long size)
    {
        _lastWordOffset = -1;
        if (size <= CksumInitOffset)
        {
            _cksumInit = null;
        }

        return base.Truncate(size);
    }

    // Page number (the 4 bytes before the image) and cksumInit (header at offset 0), remembered or read back.
    private int Binding(Span<byte> binding, long imageOffset, uint? cksumInit)
    {
        Span<byte> word = stackalloc byte[4];
        uint pageNumber;
        if (_lastWordOffset == imageOffset - 4)
        {
            pageNumber = _lastWord;
            _lastWordOffset = -1;
        }
        else
        {
            var rc = imageOffset >= 4 ? ReadRaw(word, imageOffset - 4) : SqliteNative.SQLITE_IOERR_SHORT_READ;
            if (rc != SqliteNative.SQLITE_OK)
            {
                return rc == SqliteNative.SQLITE_IOERR_SHORT_READ ? SqliteNative.SQLITE_IOERR_READ : rc;
            }

            pageNumber = BinaryPrimitives.ReadUInt32BigEndian(word);
        }

        if (cksumInit is null)
        {
            var rc = ReadRaw(word, CksumInitOffset);
            if (rc != SqliteNative.SQLITE_OK)
            {
                return rc == SqliteNative.SQLITE_IOERR_SHORT_READ ? SqliteNative.SQLITE_IOERR_READ : rc;
            }

            cksumInit = BinaryPrimitives.ReadUInt32BigEndian(word);
        }

        PageTrailer.WriteBinding(binding, pageNumber, cksumInit.Value, 0);
        return SqliteNative.SQLITE_OK;
    }

    // A record's page number, or the header at offset 0 (its cksumInit, or the zeros SQLite writes over it).
    private void Remember(ReadOnlySpan<byte> input, long offset)
    {
        if (input.Length == 4)
        {
            _lastWordOffset = offset;
            _lastWord = BinaryPrimitives.ReadUInt32BigEndian(input);
        }

        if (offset <= CksumInitOffset && offset + input.Length >= CksumInitOffset + 4)
        {
            _cksumInit = BinaryPrimitives.ReadUInt32BigEndian(input[(int)(CksumInitOffset - offset)..]);
        }
    }

    protected override void Release() => CryptographicOperations.ZeroMemory(_buffer);
}
