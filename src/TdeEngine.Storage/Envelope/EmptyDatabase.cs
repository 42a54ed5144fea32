using System.Buffers.Binary;

namespace TdeEngine.Storage.Envelope;

/// <summary>
/// What SQLite needs from the header of an empty database's page 1 before that page exists: the
/// page size and the reserved bytes per page (bytes 16 to 23 of the header, laid out as SQLite's own
/// <c>newDatabase()</c> writes them). Read when SQLite opens a file, they make its first page 1 keep
/// the cipher's trailer free without the application running any PRAGMA.
/// </summary>
internal static class EmptyDatabase
{
    /// <summary>The header bytes <see cref="WriteGeometry"/> covers: 0 to 23 (bytes 0 to 15 stay zero).</summary>
    public const int GeometryEnd = 24;

    public static void WriteGeometry(Span<byte> header, int pageSize, int reserve)
    {
        header[..GeometryEnd].Clear();
        BinaryPrimitives.WriteUInt16BigEndian(header[16..], (ushort)(pageSize == 65536 ? 1 : pageSize));
        header[18] = 1;                       // file format write version: legacy (rollback journal)
        header[19] = 1;                       // file format read version
        header[20] = (byte)reserve;           // reserved bytes at the end of each page
        header[21] = 64;                      // maximum embedded payload fraction
        header[22] = 32;                      // minimum embedded payload fraction
        header[23] = 32;                      // leaf payload fraction
    }
}
