using Microsoft.Data.Sqlite;

namespace TdeEngine.Sqlite.Tests;

/// <summary>The Chinook sample database and queries over it.</summary>
internal static class Chinook
{
    public static string Script { get; } = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "data", "Chinook_Sqlite.sql"));

    public static void Load(SqliteConnection connection)
    {
        using var tx = connection.BeginTransaction();
        using var command = connection.CreateCommand();
        command.CommandText = Script;
        command.ExecuteNonQuery();
        tx.Commit();
    }

    /// <summary>Names that must never appear in plaintext in an encrypted file.</summary>
    public static IReadOnlyList<string> SampleNames { get; } =
    [
        "AC/DC", "Aerosmith", "Alanis Morissette", "Antônio Carlos Jobim", "Led Zeppelin", "Os Paralamas Do Sucesso",
        "For Those About To Rock (We Salute You)", "Balls to the Wall", "Restless and Wild", "Princess of the Dawn",
        "Stairway To Heaven", "Luís Gonçalves", "Leonie Köhler", "Astrid Gruber", "Sao Jose dos Campos",
    ];

    /// <summary>Read queries with a deterministic result (every one has an ORDER BY).</summary>
    public static IReadOnlyList<string> Queries { get; } =
    [
        "SELECT count(*) FROM Artist",
        "SELECT count(*) FROM Track",
        "SELECT ArtistId, Name FROM Artist ORDER BY ArtistId",
        "SELECT t.Name, a.Title, ar.Name FROM Track t JOIN Album a ON a.AlbumId = t.AlbumId JOIN Artist ar ON ar.ArtistId = a.ArtistId ORDER BY t.TrackId",
        "SELECT g.Name, count(*), sum(t.Milliseconds), round(avg(t.UnitPrice), 4) FROM Track t JOIN Genre g USING (GenreId) GROUP BY g.GenreId ORDER BY g.GenreId",
        "SELECT c.Country, count(DISTINCT c.CustomerId), round(sum(i.Total), 2) FROM Customer c JOIN Invoice i USING (CustomerId) GROUP BY c.Country ORDER BY 3 DESC, 1",
        "SELECT Name FROM Track WHERE Name LIKE '%love%' ORDER BY Name, TrackId",
        "SELECT e.LastName, m.LastName FROM Employee e LEFT JOIN Employee m ON m.EmployeeId = e.ReportsTo ORDER BY e.EmployeeId",
        "SELECT CustomerId, InvoiceId, Total, sum(Total) OVER (PARTITION BY CustomerId ORDER BY InvoiceDate, InvoiceId) FROM Invoice ORDER BY CustomerId, InvoiceId",
        "WITH RECURSIVE chain(id, depth) AS (SELECT EmployeeId, 0 FROM Employee WHERE ReportsTo IS NULL UNION ALL SELECT e.EmployeeId, depth + 1 FROM Employee e JOIN chain ON e.ReportsTo = chain.id) SELECT id, depth FROM chain ORDER BY id",
        "SELECT p.Name, count(*) FROM Playlist p JOIN PlaylistTrack pt USING (PlaylistId) GROUP BY p.PlaylistId ORDER BY p.PlaylistId",
        "SELECT BillingCity, strftime('%Y', InvoiceDate), count(*) FROM Invoice GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT AlbumId, group_concat(Name, '|') FROM (SELECT AlbumId, Name FROM Track ORDER BY TrackId) GROUP BY AlbumId ORDER BY AlbumId",
        "SELECT name, type FROM sqlite_schema ORDER BY name",
    ];

    /// <summary>Writes that change the data; the suite compares state after them.</summary>
    public static IReadOnlyList<string> Writes { get; } =
    [
        "UPDATE Track SET UnitPrice = UnitPrice * 1.1 WHERE GenreId IN (1, 3)",
        "DELETE FROM PlaylistTrack WHERE PlaylistId = 1 AND TrackId % 3 = 0",
        "INSERT INTO Artist (Name) SELECT Name || ' (Remastered)' FROM Artist WHERE ArtistId <= 50",
        "CREATE INDEX IF NOT EXISTS IX_Track_Name ON Track (Name)",
        "CREATE TABLE Blobs (Id INTEGER PRIMARY KEY, Data BLOB)",
        "INSERT INTO Blobs (Data) SELECT randomblob(0) || zeroblob(20000) || CAST(Name AS BLOB) FROM Artist LIMIT 40",
    ];

    /// <summary>Runs a query and returns its rows as strings (column values joined), for comparison.</summary>
    public static List<string> Rows(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        using var reader = command.ExecuteReader();
        var rows = new List<string>();
        while (reader.Read())
        {
            var values = new object[reader.FieldCount];
            reader.GetValues(values);
            rows.Add(string.Join('\u001f', values.Select(v => v switch
            {
                byte[] b => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(b)),
                double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
                _ => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture),
            })));
        }

        return rows;
    }
}
