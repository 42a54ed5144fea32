using System.Buffers.Binary;

namespace TdeEngine.Storage.Pages;

/// <summary>
/// The last <c>R</c> (reserved) bytes of every sealed page image:
/// <code>
///  +0   1   cipher suite id (1 = AES-256-GCM, 2 = AEGIS-256)
///  +1   3   DEK version, big-endian (1..16,777,215)
///  +4   N   nonce (12 or 32 bytes)
///  +4+N T   tag (16 or 32 bytes)
/// </code>
/// SQLite never sees these bytes: a page handed to SQLite carries zeros there, so the checksums
/// SQLite keeps in journals and WAL frames cover zeros and hold across recovery.
/// </summary>
internal static class PageTrailer
{
    public const int HeaderSize = 4;
    public const uint MaxDekVersion = 0xFFFFFF;

    public static void Write(Span<byte> trailer, PageCipherSuite suite, uint dekVersion)
    {
        trailer[0] = (byte)suite;
        trailer[1] = (byte)(dekVersion >> 16);
        trailer[2] = (byte)(dekVersion >> 8);
        trailer[3] = (byte)dekVersion;
    }

    public static PageCipherSuite Suite(ReadOnlySpan<byte> trailer) => (PageCipherSuite)trailer[0];

    public static uint DekVersion(ReadOnlySpan<byte> trailer) => ((uint)trailer[1] << 16) | ((uint)trailer[2] << 8) | trailer[3];

    /// <summary>
    /// The AAD of a page: database id, file kind, position (page number in the database file,
    /// byte offset in a journal or WAL), DEK version and cipher suite.
    /// <code>
    ///  0  16  database id
    ///  16  1  file kind (1 = database, 2 = rollback journal, 3 = WAL)
    ///  17  8  position, big-endian
    ///  25  4  DEK version, big-endian
    ///  29  1  cipher suite id
    /// </code>
    /// </summary>
    public const int AadSize = 30;

    /// <summary>
    /// What a journal or WAL image is bound to besides its offset, appended to the AAD of those
    /// images (database pages have none: their page number is their position):
    /// <code>
    ///  30  4  page number SQLite recorded for the image, big-endian
    ///         (journal: the 4 bytes before the image; WAL: bytes 0..3 of the frame header)
    ///  34  4  journal: cksumInit, bytes 12..15 of the journal header at offset 0 (random per journal)
    ///         WAL:     salt-1, bytes 8..11 of the frame header
    ///  38  4  journal: zero
    ///         WAL:     salt-2, bytes 12..15 of the frame header
    /// </code>
    /// </summary>
    public const int BindingSize = 12;

    /// <summary>Writes a 12-byte <see cref="BindingSize"/> binding.</summary>
    public static void WriteBinding(Span<byte> binding, uint pageNumber, uint first, uint second)
    {
        BinaryPrimitives.WriteUInt32BigEndian(binding, pageNumber);
        BinaryPrimitives.WriteUInt32BigEndian(binding[4..], first);
        BinaryPrimitives.WriteUInt32BigEndian(binding[8..], second);
    }

    public static void WriteAad(Span<byte> aad, ReadOnlySpan<byte> databaseId, PageFileKind kind, long position, uint dekVersion, PageCipherSuite suite)
    {
        databaseId.CopyTo(aad);
        aad[16] = (byte)kind;
        BinaryPrimitives.WriteInt64BigEndian(aad[17..], position);
        BinaryPrimitives.WriteUInt32BigEndian(aad[25..], dekVersion);
        aad[29] = (byte)suite;
    }
}

/// <summary>Which file a sealed page image lives in; part of its AAD so images cannot move between files.</summary>
internal enum PageFileKind : byte
{
    Database = 1,
    RollbackJournal = 2,
    Wal = 3,
}
