using System.Buffers.Binary;
using Microsoft.Data.Sqlite;
using TdeEngine.Storage.Errors;
using static TdeEngine.Sqlite.Tests.SqlExtensions;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// WAL bodies read alone are bound to the WAL header's salts; the wal-index (-shm) only says when
/// those may be reused. It is an unauthenticated file, and its salts are zero until the first
/// commit of a wal-index built over an empty WAL (from the 2026-11-29 review).
/// </summary>
public sealed class WalIndexSaltsTests : IDisposable
{
    private const int Frame = 24 + 4096;
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private byte[] ReadAt(string name, long at, int count)
    {
        using var s = new FileStream(_dir.File(name), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        var bytes = new byte[count];
        s.Position = at;
        s.ReadExactly(bytes);
        return bytes;
    }

    private void WriteAt(string name, long at, byte[] bytes)
    {
        using var s = new FileStream(_dir.File(name), FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
        s.Position = at;
        s.Write(bytes);
    }

    // SQLite's walChecksumBytes over the first 40 bytes of a WalIndexHdr (native order when bigEndCksum == 0 on x86).
    private static (uint S1, uint S2) IndexHeaderChecksum(ReadOnlySpan<byte> header)
    {
        var native = header[13] == (BitConverter.IsLittleEndian ? 0 : 1);
        uint s1 = 0, s2 = 0;
        for (var i = 0; i < 40; i += 8)
        {
            var x0 = BinaryPrimitives.ReadUInt32LittleEndian(header[i..]);
            var x1 = BinaryPrimitives.ReadUInt32LittleEndian(header[(i + 4)..]);
            if (!native)
            {
                x0 = BinaryPrimitives.ReverseEndianness(x0);
                x1 = BinaryPrimitives.ReverseEndianness(x1);
            }

            s1 += x0 + s2;
            s2 += x1 + s1;
        }

        return (s1, s2);
    }

    // Honest workload: the first transaction on a freshly built wal-index (empty WAL: its salts are zero)
    // spills pages, changes a spilled page again (SQLite rewrites the frame; later frames get zero
    // salts until commit), and reads spilled pages back before it commits.
    [Fact]
    public void First_spilling_transaction_over_a_fresh_wal_index_reads_its_zero_salt_frames()
    {
        using (var setup = _dir.OpenTde("z.db"))
        {
            setup.Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);");
        }

        // The last connection closed: WAL and wal-index are gone; the next one builds the wal-index over no WAL.
        using var c = _dir.OpenTde("z.db");
        c.Exec("PRAGMA cache_size=5; PRAGMA wal_autocheckpoint=0;");
        Assert.Equal(0L, c.Scalar<long>("SELECT count(*) FROM t"));
        Assert.Equal(new byte[8], ReadAt("z.db-shm", 32, 8));
        try
        {
            c.Exec($"BEGIN; INSERT INTO t(v) SELECT randomblob(600) FROM {Rows(200)}; UPDATE t SET v = randomblob(600); " +
                   $"INSERT INTO t(v) SELECT randomblob(600) FROM {Rows(200)};");
            Assert.Equal(400L * 600, c.Scalar<long>("SELECT sum(length(v)) FROM t"));
            c.Exec("COMMIT");
        }
        catch (SqliteException e)
        {
            Assert.Fail(Fail(e));
        }

        Assert.Equal("ok", c.Scalar<string>("PRAGMA integrity_check"));
    }

    // Tamper: a frame of an older generation put back with its own header, and the -shm's salts (both
    // header copies, checksum recomputed: SQLite accepts them) set to that generation's, under a live database.
    [Fact]
    public void An_older_generation_frame_with_the_wal_index_salts_edited_to_match_fails()
    {
        using var writer = _dir.OpenTde("g.db");
        writer.Exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE a(v TEXT); CREATE TABLE b(v TEXT);");
        writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
        writer.Exec("INSERT INTO a VALUES ('old-a')");   // generation 1, frame 0: table a's page
        var old = ReadAt("g.db-wal", 32, Frame);
        writer.Exec("PRAGMA wal_checkpoint(RESTART)");
        writer.Exec("INSERT INTO b VALUES ('new-b')");   // generation 2, frame 0: table b's page
        Assert.NotEqual(old.AsSpan(8, 8).ToArray(), ReadAt("g.db-wal", 32 + 8, 8));

        var header = ReadAt("g.db-shm", 0, 48);
        Assert.Equal(IndexHeaderChecksum(header), (BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(40)), BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(44))));
        old.AsSpan(8, 8).CopyTo(header.AsSpan(32));
        var (s1, s2) = IndexHeaderChecksum(header);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(40), s1);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(44), s2);
        WriteAt("g.db-shm", 0, header);
        WriteAt("g.db-shm", 48, header);
        WriteAt("g.db-wal", 32, old);

        SqlExtensions.AssertOlderGenerationFrameRefused(_dir.File("g.db"));
    }

    // Honest: a connection that never restarted the WAL (its salts for a new WAL are random) writes a
    // new WAL's header and frames, reads them back and rolls back; another connection then writes
    // that WAL anew with the salts the wal-index already has. The first must not keep the WAL
    // header's salts it read, though the wal-index's salts did not change in between.
    [Fact]
    public void A_rolled_back_new_wal_then_another_writer_with_the_wal_index_salts()
    {
        using var a = _dir.OpenTde("r.db");
        a.Exec("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);");
        a.Exec($"INSERT INTO t(v) SELECT randomblob(600) FROM {Rows(50)}");
        using var b = _dir.OpenTde("r.db");
        b.Exec("PRAGMA cache_size=5; PRAGMA wal_autocheckpoint=0;");
        Assert.Equal(50L, b.Scalar<long>("SELECT count(*) FROM t"));
        for (var round = 0; round < 3; round++)
        {
            a.Exec("PRAGMA wal_checkpoint(TRUNCATE)");
            try
            {
                b.Exec($"BEGIN; INSERT INTO t(v) SELECT randomblob(600) FROM {Rows(200)}; UPDATE t SET v = randomblob(600);");
                Assert.Equal((250L + (round * 10)) * 600, b.Scalar<long>("SELECT sum(length(v)) FROM t"));
                b.Exec("ROLLBACK");
                a.Exec($"INSERT INTO t(v) SELECT randomblob(600) FROM {Rows(10)}");
                Assert.Equal((60L + (round * 10)) * 600, b.Scalar<long>("SELECT sum(length(v)) FROM t"));
                Assert.Equal("ok", b.Scalar<string>("PRAGMA integrity_check"));
            }
            catch (SqliteException e)
            {
                Assert.Fail($"round {round}: {Fail(e)}");
            }
        }
    }
}
