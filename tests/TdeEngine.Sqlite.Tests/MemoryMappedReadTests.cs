using Microsoft.Data.Sqlite;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// <c>PRAGMA mmap_size</c> on a TDE connection: the wrapped unix file maps the sealed file and reads
/// copy from the mapping instead of calling <c>pread</c>; every page is still opened (decrypted and
/// authenticated) before SQLite sees it, and SQLite's own invalidation keeps the mapping in step
/// with other connections.
/// </summary>
public sealed class MemoryMappedReadTests : IDisposable
{
    private const long MapLimit = 256L * 1024 * 1024;
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private SqliteConnection OpenMapped(string name)
    {
        var db = _dir.OpenTde(name);
        db.Exec($"PRAGMA mmap_size={MapLimit}");
        return db;
    }

    // The bytes of this process's mappings of a file, from /proc/self/maps.
    internal static long MappedBytes(string path)
    {
        long total = 0;
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            if (!line.EndsWith(" " + path, StringComparison.Ordinal))
            {
                continue;
            }

            var range = line[..line.IndexOf(' ', StringComparison.Ordinal)].Split('-');
            total += Convert.ToInt64(range[1], 16) - Convert.ToInt64(range[0], 16);
        }

        return total;
    }

    private static void Fill(SqliteConnection db, int from, int count)
    {
        using var tx = db.BeginTransaction();
        using var insert = db.CreateCommand();
        insert.CommandText = "INSERT INTO t(id, v) VALUES ($id, $v)";
        var id = insert.Parameters.Add("$id", SqliteType.Integer);
        insert.Parameters.AddWithValue("$v", new string('v', 300));
        for (var i = from; i < from + count; i++)
        {
            id.Value = i;
            insert.ExecuteNonQuery();
        }

        tx.Commit();
    }

    [Fact]
    public void The_sealed_file_is_mapped_and_every_page_is_still_opened()
    {
        using (var setup = _dir.OpenTde("m.db"))
        {
            Chinook.Load(setup);
        }

        using var unmapped = _dir.OpenTde("m.db");
        Assert.Equal(3503L, unmapped.Scalar<long>("SELECT count(*) FROM Track"));
        Assert.Equal(0, MappedBytes(_dir.File("m.db")));   // no mapping unless asked for

        using var db = OpenMapped("m.db");
        Assert.Equal(3503L, db.Scalar<long>("SELECT count(*) FROM Track"));
        Assert.Equal("AC/DC", db.Scalar<string>("SELECT Name FROM Artist WHERE ArtistId = 1"));
        Assert.Equal("ok", db.Scalar<string>("PRAGMA integrity_check"));

        // The whole sealed file (envelope included) is mapped: SQLite read it through the mapping.
        Assert.True(MappedBytes(_dir.File("m.db")) >= new FileInfo(_dir.File("m.db")).Length);
    }

    [Fact]
    public void Turning_the_pragma_off_and_on_again_unmaps_and_maps_the_file()
    {
        using (var setup = _dir.OpenTde("t.db"))
        {
            Chinook.Load(setup);
        }

        var path = _dir.File("t.db");
        using var db = OpenMapped("t.db");
        Assert.Equal(3503L, db.Scalar<long>("SELECT count(*) FROM Track"));
        Assert.True(MappedBytes(path) > 0);

        db.Exec("PRAGMA mmap_size=0");
        Assert.Equal(3503L, db.Scalar<long>("SELECT count(*) FROM Track"));
        Assert.Equal(0, MappedBytes(path));   // reads are system calls again, and still decrypted

        db.Exec($"PRAGMA mmap_size={MapLimit}");
        Assert.Equal(275L, db.Scalar<long>("SELECT count(*) FROM Artist"));
        Assert.True(MappedBytes(path) >= new FileInfo(path).Length);   // mapped again on the next page SQLite asked for
    }

    [Fact]
    public void A_page_altered_on_disk_is_detected_through_the_mapping()
    {
        using (var setup = OpenMapped("a.db"))
        {
            setup.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
            Fill(setup, 1, 2000);
        }

        using var reader = OpenMapped("a.db");
        Assert.Equal(2000L, reader.Scalar<long>("SELECT count(*) FROM t"));
        Assert.True(MappedBytes(_dir.File("a.db")) > 0);

        // The mapping is shared with the file: a bit flipped on disk is what the next read copies.
        using (var stream = File.Open(_dir.File("a.db"), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite))
        {
            stream.Position = 4096 + (6L * 4096) + 1000;   // page 7
            var b = stream.ReadByte();
            stream.Position -= 1;
            stream.WriteByte((byte)(b ^ 0x10));
        }

        using var fresh = OpenMapped("a.db");
        var e = Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() => fresh.Scalar<long>("SELECT sum(length(v)) FROM t")));
        Assert.Equal(TdeStorageException.Codes.PageAuthenticationFailed, e.Code);
        Assert.Equal(7, e.PageNumber);
    }

    [Theory]
    [InlineData("DELETE")]
    [InlineData("WAL")]
    public void Another_connection_shrinking_and_growing_the_file_is_followed(string journalMode)
    {
        var path = _dir.File("s.db");
        using (var setup = _dir.OpenTde("s.db"))
        {
            setup.Exec($"PRAGMA journal_mode={journalMode}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
            Fill(setup, 1, 10_000);
            setup.Exec(journalMode == "WAL" ? "PRAGMA wal_checkpoint(TRUNCATE)" : "SELECT 1");
        }

        using var reader = OpenMapped("s.db");
        Assert.Equal(10_000L, reader.Scalar<long>("SELECT count(*) FROM t"));
        var large = new FileInfo(path).Length;
        Assert.True(MappedBytes(path) >= large);

        // Another connection (not mapping) shrinks the file under the reader's mapping.
        using (var writer = _dir.OpenTde("s.db"))
        {
            writer.Exec("DELETE FROM t WHERE id > 500; VACUUM;");
            if (journalMode == "WAL")
            {
                writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
            }
        }

        Assert.True(new FileInfo(path).Length < large / 4);
        Assert.Equal(500L, reader.Scalar<long>("SELECT count(*) FROM t"));
        Assert.Equal(500L * 300, reader.Scalar<long>("SELECT sum(length(v)) FROM t"));
        Assert.Equal("ok", reader.Scalar<string>("PRAGMA integrity_check"));

        // ...and grows it past the old mapping: the reader drops its mapping and maps the new length.
        using (var writer = _dir.OpenTde("s.db"))
        {
            Fill(writer, 501, 20_000);
            if (journalMode == "WAL")
            {
                writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
            }
        }

        var grown = new FileInfo(path).Length;
        Assert.True(grown > large);
        Assert.Equal(20_500L, reader.Scalar<long>("SELECT count(*) FROM t"));
        Assert.Equal("ok", reader.Scalar<string>("PRAGMA integrity_check"));
        Assert.True(MappedBytes(path) >= grown, $"mapped {MappedBytes(path)} of {grown} bytes");
    }

    [Fact]
    public void A_URI_parameter_maps_the_file_without_a_PRAGMA()
    {
        using (var setup = _dir.OpenTde("u.db"))
        {
            Chinook.Load(setup);
        }

        using var db = _dir.OpenTde("u.db", $"mmap_size={MapLimit}");

        Assert.Equal(MapLimit, db.Scalar<long>("PRAGMA mmap_size"));
        Assert.Equal(275L, db.Scalar<long>("SELECT count(*) FROM Artist"));
        Assert.True(MappedBytes(_dir.File("u.db")) >= new FileInfo(_dir.File("u.db")).Length);
    }

    [Fact]
    public void The_option_sets_every_TDE_connection_and_leaves_plain_ones_alone()
    {
        const long Limit = 64L * 1024 * 1024;
        TdeSqlite.Register(TdeTestEnvironment.Kms, new Storage.TdeStorageOptions { TimeProvider = TdeTestEnvironment.Clock, MemoryMapSize = Limit });
        try
        {
            using var tde = _dir.OpenTde("o.db");
            using var plain = _dir.OpenPlain("plain.db");
            using var overridden = _dir.OpenTde("o.db", "mmap_size=0");

            Assert.Equal(Limit, tde.Scalar<long>("PRAGMA mmap_size"));
            Assert.Equal(0L, plain.Scalar<long>("PRAGMA mmap_size"));
            Assert.Equal(0L, overridden.Scalar<long>("PRAGMA mmap_size"));
        }
        finally
        {
            TdeTestEnvironment.EnsureRegistered();
        }

        using var afterwards = _dir.OpenTde("o.db");
        Assert.Equal(0L, afterwards.Scalar<long>("PRAGMA mmap_size"));
    }

    [Theory]
    [InlineData("mmap_size=lots")]
    [InlineData("mmap_size=-1")]
    [InlineData("cipher=rot13")]
    [InlineData("page_size=1000")]
    public void A_malformed_URI_parameter_fails_the_open_with_a_typed_error(string parameter)
    {
        var e = Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() => _dir.OpenTde("bad.db", parameter)));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, e.Code);
        Assert.Contains($"'{parameter}'", e.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(_dir.File("bad.db")));   // nothing was created
    }
}
