using System.Buffers.Binary;

namespace TdeEngine.Storage.Envelope;

/// <summary>
/// Page 1 of an empty SQLite database whose pages keep <c>reserve</c> bytes free, as SQLite's own
/// <c>newDatabase()</c> lays it out after the first commit. Writing it ourselves is how a new TDE
/// database gets its reserved bytes without the application running any PRAGMA.
/// </summary>
internal static class EmptyDatabase
{
    /// <summary>The SQLite version the header names (3.53.3, the version the e_sqlite3 bundle ships).</summary>
    private const int SqliteVersionNumber = 3053003;

    public static void WritePage1(Span<byte> page, int pageSize, int reserve)
    {
        page[..pageSize].Clear();
        "SQLite format 3\0"u8.CopyTo(page);
        BinaryPrimitives.WriteUInt16BigEndian(page[16..], (ushort)(pageSize == 65536 ? 1 : pageSize));
        page[18] = 1;                       // file format write version: legacy (rollback journal)
        page[19] = 1;                       // file format read version
        page[20] = (byte)reserve;           // reserved bytes at the end of each page
        page[21] = 64;                      // maximum embedded payload fraction
        page[22] = 32;                      // minimum embedded payload fraction
        page[23] = 32;                      // leaf payload fraction
        BinaryPrimitives.WriteUInt32BigEndian(page[24..], 1);   // file change counter
        BinaryPrimitives.WriteUInt32BigEndian(page[28..], 1);   // database size in pages
        BinaryPrimitives.WriteUInt32BigEndian(page[92..], 1);   // version-valid-for = change counter
        BinaryPrimitives.WriteUInt32BigEndian(page[96..], SqliteVersionNumber);

        // The b-tree header of the (empty) sqlite_schema table: a leaf table page with no cells.
        var usable = pageSize - reserve;
        page[100] = 0x0D;
        BinaryPrimitives.WriteUInt16BigEndian(page[105..], (ushort)(usable == 65536 ? 0 : usable));
    }
}
