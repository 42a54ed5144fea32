using TdeEngine.Storage.Envelope;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Pages;
using TdeEngine.Storage.Vfs;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// The envelope records how many pages each DEK may have sealed (a reservation written ahead of
/// the count). Two processes can write the same envelope slot from the same envelope; the one that
/// loses must notice and write its reservation again, or the count resumes too low after a restart.
/// </summary>
public sealed class SealReservationTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose()
    {
        MainDatabaseHandler.ReservationWritten = null;
        _dir.Dispose();
    }

    private static DatabaseEnvelope Envelope(string file)
    {
        using var raw = RawDatabaseFile.Open(file, writable: false);
        var region = new byte[DatabaseEnvelope.RegionSize];
        raw.Read(region, 0);
        return DatabaseEnvelope.Read(region, file);
    }

    [Fact]
    public void A_reservation_overwritten_by_a_racing_writer_is_written_again_on_top_of_the_winner()
    {
        var file = _dir.File("race.db");
        using var db = _dir.OpenTde("race.db");
        db.Exec("CREATE TABLE t(b BLOB)");
        var before = Envelope(file).ActiveDek.SealsReserved;

        // After this process writes its first new reservation, "another process" writes the same
        // slot from the envelope both had read, with a reservation of its own that is lower.
        var reservations = new List<ulong>();
        MainDatabaseHandler.ReservationWritten = (path, reserved) =>
        {
            if (path != file)
            {
                return;
            }

            reservations.Add(reserved);
            if (reservations.Count == 1)
            {
                var ours = Envelope(file);
                var theirs = ours with
                {
                    Deks = ours.Deks.Select(d => d with { SealsReserved = before + 1 }).ToList(),
                };
                TestEnvelopes.WriteSigned(file, theirs);
            }
        };

        // Creating the table took a reservation of one block (4096 seals) ahead of the count: about
        // 6,000 pages pass it once, not twice.
        var bytes = (long)SealCounter.Block * 3 / 2 * 4096;
        db.Exec($"INSERT INTO t VALUES (zeroblob({bytes}))");
        MainDatabaseHandler.ReservationWritten = null;

        // One reservation, written twice: the first write was lost to the racing one.
        Assert.Equal(2, reservations.Count);
        Assert.Equal(reservations[0], reservations[1]);
        var after = Envelope(file);
        Assert.Equal(reservations[0], after.ActiveDek.SealsReserved);
        Assert.Equal(bytes, db.Scalar<long>("SELECT length(b) FROM t"));
        Assert.Equal("ok", db.Scalar<string>("PRAGMA integrity_check"));
    }

    [Fact]
    public void A_reservation_keeps_what_the_winning_envelope_changed()
    {
        var file = _dir.File("merge.db");
        using var db = _dir.OpenTde("merge.db");
        db.Exec("CREATE TABLE t(b BLOB)");
        var original = Envelope(file);

        // The racing write carries a change of its own: the DEK as another process re-wrapped it
        // (here the same blob, re-labelled with a new key ARN, as the re-wrap writes after a move).
        var calls = 0;
        MainDatabaseHandler.ReservationWritten = (path, _) =>
        {
            if (path != file || ++calls > 1)
            {
                return;
            }

            var ours = Envelope(file);
            var theirs = original with { Sequence = ours.Sequence, KmsKeyArn = original.KmsKeyArn + "-moved" };
            TestEnvelopes.WriteSigned(file, theirs);
        };

        db.Exec("INSERT INTO t VALUES (zeroblob(40000000))");
        MainDatabaseHandler.ReservationWritten = null;

        var after = Envelope(file);
        Assert.Equal(original.KmsKeyArn + "-moved", after.KmsKeyArn);
        Assert.True(after.ActiveDek.SealsReserved > original.ActiveDek.SealsReserved);
        Assert.True(after.Sequence > original.Sequence + 1);
    }
}
