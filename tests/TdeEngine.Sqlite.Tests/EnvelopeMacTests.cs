using System.Buffers.Binary;
using System.Security.Cryptography;
using Microsoft.Data.Sqlite;
using TdeEngine.Storage.Envelope;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Pages;
using TdeEngine.Storage.Vfs;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// The envelope carries an HMAC-SHA256 under a key derived from its active DEK: an edit with the
/// unkeyed checksum recomputed is refused wherever a DEK is unwrapped, every writer signs what it
/// writes, envelopes of earlier builds open and are upgraded, and a rewrite in the old format is refused.
/// </summary>
public sealed class EnvelopeMacTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private string MakeDatabase(string name, string? uriQuery = null)
    {
        using var db = _dir.OpenTde(name, uriQuery);
        db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
        db.Exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO t(v) SELECT printf('row %d %s', i, hex(randomblob(40))) FROM n");
        return _dir.File(name);
    }

    private TdeStorageException OpenFails(string name)
    {
        using var db = new SqliteConnection(TdeSqlite.ConnectionString(_dir.File(name)));
        return Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() =>
        {
            db.Open();
            return db.Scalar<long>("SELECT count(*) FROM t");
        }));
    }

    private long Count(string name)
    {
        using var db = _dir.OpenTde(name);
        return db.Scalar<long>("SELECT count(*) FROM t");
    }

    private static byte[] Dek(DatabaseEnvelope envelope)
    {
        using var dek = TdeVfs.Current.Keys.Get(envelope.ActiveDek.WrappedDek, envelope.ContextOf(envelope.ActiveDek));
        return dek.Span.ToArray();
    }

    // The slot's bytes as docs/file-format.md draws them: version 2, and at L-64 the HMAC-SHA256 of
    // bytes [0, L-64) under HKDF-SHA256(active DEK, no salt, "TdeEngine envelope MAC v1"), computed
    // here with the platform's primitives, not the engine's.
    private static void AssertSlotMac(string file, int index)
    {
        var slot = TestEnvelopes.Region(file).AsSpan(index * DatabaseEnvelope.SlotSize, DatabaseEnvelope.SlotSize).ToArray();
        var envelope = TestEnvelopes.Slot(file, index);
        Assert.NotNull(envelope);
        Assert.Equal(2, BinaryPrimitives.ReadUInt16BigEndian(slot.AsSpan(8)));
        int length = BinaryPrimitives.ReadUInt16BigEndian(slot.AsSpan(10));
        var key = HKDF.DeriveKey(HashAlgorithmName.SHA256, Dek(envelope), 32, salt: [], info: "TdeEngine envelope MAC v1"u8.ToArray());
        Assert.Equal(HMACSHA256.HashData(key, slot.AsSpan(0, length - 64)), slot.AsSpan(length - 64, 32).ToArray());
        Assert.Equal(SHA256.HashData(slot.AsSpan(0, length - 32)), slot.AsSpan(length - 32, 32).ToArray());
    }

    private static void AssertBothSlotsSigned(string file)
    {
        AssertSlotMac(file, 0);
        AssertSlotMac(file, 1);
    }

    // What someone with write access and no key does: lower the active DEK's seal reservation in a
    // slot, give it the highest sequence so it wins, and recompute the slot's SHA-256.
    private static void LowerReservationInSlot(string file, int index)
    {
        var region = TestEnvelopes.Region(file);
        var top = Math.Max(TestEnvelopes.Slot(file, 0)?.Sequence ?? 0, TestEnvelopes.Slot(file, 1)?.Sequence ?? 0);
        var slot = region.AsSpan(index * DatabaseEnvelope.SlotSize, DatabaseEnvelope.SlotSize).ToArray();
        int length = BinaryPrimitives.ReadUInt16BigEndian(slot.AsSpan(10));
        int arnLength = BinaryPrimitives.ReadUInt16BigEndian(slot.AsSpan(46));
        var seals = 48 + arnLength + 1 + 6;   // the first DEK entry: version 4, suite 1, flags 1, then seals reserved
        Assert.NotEqual(0UL, BinaryPrimitives.ReadUInt64BigEndian(slot.AsSpan(seals)));
        BinaryPrimitives.WriteUInt64BigEndian(slot.AsSpan(seals), 0);
        var sequence = top + 1 + ((top + 1) % 2 == (ulong)index ? 0UL : 1UL);
        BinaryPrimitives.WriteUInt64BigEndian(slot.AsSpan(12), sequence);
        SHA256.HashData(slot.AsSpan(0, length - 32), slot.AsSpan(length - 32, 32));
        TestEnvelopes.WriteSlot(file, slot, index * DatabaseEnvelope.SlotSize);

        var parsed = TestEnvelopes.Read(file);   // the unkeyed checks pass: this is the envelope a reader picks
        Assert.Equal(sequence, parsed.Sequence);
        Assert.Equal(0UL, parsed.ActiveDek.SealsReserved);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public void A_lowered_seal_reservation_with_the_checksum_recomputed_is_refused_wherever_the_DEK_is_unwrapped(int slot)
    {
        var file = MakeDatabase("s.db");
        AssertBothSlotsSigned(file);
        var dekHex = Convert.ToHexString(Dek(TestEnvelopes.Read(file)));
        LowerReservationInSlot(file, slot);
        var forged = File.ReadAllBytes(file);

        var e = OpenFails("s.db");
        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, e.Code);
        Assert.Equal(file, e.File);
        Assert.Contains(file, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(dekHex, e.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, Assert.Throws<TdeStorageException>(() => TdeDatabases.Verify(file)).Code);
        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, Assert.Throws<TdeStorageException>(() => TdeDatabases.Rewrap(file)).Code);
        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, Assert.Throws<TdeStorageException>(() => TdeDatabases.Rekey(file)).Code);
        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered,
            Assert.Throws<TdeStorageException>(() => TdeDatabases.Decrypt(file, _dir.File("plain.db"))).Code);
        Assert.Equal(forged, File.ReadAllBytes(file));   // nothing was written

        // Status needs no key and checks no MAC: it still reads, and says the envelope carries one.
        var status = TdeDatabases.Status(file);
        Assert.True(status.EnvelopeAuthenticated);
        Assert.Equal(0UL, status.Deks.Single().SealsReserved);
    }

    [Theory]
    [InlineData("unknown cipher")]
    [InlineData("version named twice")]
    public void A_DEK_entry_added_with_the_checksum_recomputed_is_not_read_as_an_envelope(string change)
    {
        var file = MakeDatabase("x.db");
        var envelope = TestEnvelopes.Read(file);
        var active = envelope.ActiveDek;
        // The active DEK's own wrapped key again: it unwraps (its EncryptionContext names no version).
        EnvelopeDek[] added = change == "unknown cipher"
            ? [active with { Version = active.Version + 1, Suite = (PageCipherSuite)77 }]
            : [active with { Version = active.Version + 1 }, active with { Version = active.Version + 1 }];
        var forged = envelope with { Sequence = envelope.Sequence + 1, Deks = [.. added, .. envelope.Deks] };
        TestEnvelopes.WriteWithGuessedMac(file, forged);

        // A slot this build cannot have written is skipped like a torn one: the other, signed slot is read.
        Assert.Null(TestEnvelopes.Slot(file, DatabaseEnvelope.SlotOffset(forged.Sequence) / DatabaseEnvelope.SlotSize));
        Assert.Equal(envelope.Sequence, TestEnvelopes.Read(file).Sequence);
        Assert.True(TdeDatabases.Verify(file).Intact);
        Assert.Equal(2000, Count("x.db"));
    }

    [Fact]
    public void An_edited_key_ARN_with_the_checksum_recomputed_is_refused_at_open_rewrap_and_rekey()
    {
        var victimKey = TdeTestEnvironment.Kms.CreateKey(TdeTestEnvironment.Caller, new() { Description = "victim" }).KeyId;
        var attackerKey = TdeTestEnvironment.Kms.CreateKey(TdeTestEnvironment.Caller, new() { Description = "attacker" }).KeyId;
        var file = MakeDatabase("k.db", $"kms_key={victimKey}");
        var envelope = TestEnvelopes.Read(file);
        TestEnvelopes.WriteWithGuessedMac(file, envelope with
        {
            Sequence = envelope.Sequence + 1,
            KmsKeyArn = envelope.KmsKeyArn.Replace(victimKey, attackerKey, StringComparison.Ordinal),
        });
        var forged = File.ReadAllBytes(file);
        Assert.Contains(attackerKey, TdeDatabases.Status(file).KmsKeyArn, StringComparison.Ordinal);

        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, OpenFails("k.db").Code);
        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, Assert.Throws<TdeStorageException>(() => TdeDatabases.Rewrap(file)).Code);
        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, Assert.Throws<TdeStorageException>(() => TdeDatabases.Rewrap(file, attackerKey)).Code);
        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, Assert.Throws<TdeStorageException>(() => TdeDatabases.Rekey(file)).Code);
        Assert.Equal(forged, File.ReadAllBytes(file));
    }

    [Fact]
    public void An_envelope_edited_while_a_connection_is_open_stops_its_next_write()
    {
        var file = MakeDatabase("live.db");
        using var db = _dir.OpenTde("live.db");
        Assert.Equal(2000L, db.Scalar<long>("SELECT count(*) FROM t"));
        var envelope = TestEnvelopes.Read(file);
        TestEnvelopes.WriteWithGuessedMac(file, envelope with
        {
            Sequence = envelope.Sequence + 1,
            Deks = envelope.Deks.Select(d => d with { SealsReserved = 1 }).ToList(),
        });

        var e = Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() => db.Exec("INSERT INTO t(v) VALUES ('after')")));

        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, e.Code);
    }

    [Fact]
    public void Seal_reservations_rewrap_and_rekey_keep_both_slots_signed_under_the_active_DEK()
    {
        var file = MakeDatabase("w.db");
        using (var db = _dir.OpenTde("w.db"))
        {
            db.Exec($"INSERT INTO t(v) VALUES (zeroblob({SealCounter.Block * 2 * 4096}))");   // several reservations
        }

        AssertBothSlotsSigned(file);
        var before = TestEnvelopes.Read(file);

        TdeDatabases.Rewrap(file);
        AssertBothSlotsSigned(file);
        Assert.Equal(before.Sequence + 2, TestEnvelopes.Read(file).Sequence);

        var status = TdeDatabases.Rekey(file, batchPages: 64);
        Assert.Equal(2u, status.ActiveDekVersion);
        AssertBothSlotsSigned(file);
        Assert.True(status.EnvelopeAuthenticated);
        Assert.True(status.EnvelopeDowngradeProtected);
        var after = TestEnvelopes.Read(file);
        using (var oldKey = TestEnvelopes.MacKey(before))
        {
            // Signed under the new DEK: the old one's MAC key no longer verifies it.
            Assert.Throws<TdeStorageException>(() => after.VerifyMac(oldKey, file));
        }

        Assert.Equal(2001L, Count("w.db"));
        Assert.True(TdeDatabases.Verify(file).Intact);
    }

    [Fact]
    public void A_database_of_an_earlier_build_opens_unauthenticated_and_gets_a_MAC_on_its_first_envelope_write()
    {
        var file = MakeDatabase("old.db");
        TestEnvelopes.MakeLegacy(file);
        Assert.False(TestEnvelopes.Slot(file, 0)!.Authenticated);
        Assert.False(TestEnvelopes.Slot(file, 1)!.Authenticated);
        var status = TdeDatabases.Status(file);
        Assert.False(status.EnvelopeAuthenticated);
        Assert.False(status.EnvelopeDowngradeProtected);

        // It opens and reads; reading writes nothing.
        Assert.Equal(2000L, Count("old.db"));
        Assert.True(TdeDatabases.Verify(file).Intact);
        Assert.False(TestEnvelopes.Read(file).Authenticated);

        // The first seal reservation writes the envelope: now with a MAC (its DEK is still the old one).
        using (var db = _dir.OpenTde("old.db"))
        {
            db.Exec($"INSERT INTO t(v) VALUES (zeroblob({SealCounter.Block * 2 * 4096}))");
        }

        var upgraded = TestEnvelopes.Read(file);
        Assert.True(upgraded.Authenticated);
        Assert.False(upgraded.ActiveDek.EnvelopeBound);
        Assert.True(TestEnvelopes.MacVerifies(file, upgraded));
        status = TdeDatabases.Status(file);
        Assert.True(status.EnvelopeAuthenticated);
        Assert.False(status.EnvelopeDowngradeProtected);

        // From then on an edit is refused like in a new database.
        var slot = DatabaseEnvelope.SlotOffset(upgraded.Sequence) / DatabaseEnvelope.SlotSize;
        var good = File.ReadAllBytes(file);
        LowerReservationInSlot(file, slot);
        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, OpenFails("old.db").Code);
        File.WriteAllBytes(file, good);

        // A DEK re-encryption replaces the old DEK with one bound to authenticated envelopes.
        status = TdeDatabases.Rekey(file, batchPages: 64);
        Assert.True(status.EnvelopeDowngradeProtected);
        AssertBothSlotsSigned(file);
        Assert.Equal(2001L, Count("old.db"));
    }

    [Fact]
    public void A_rewrap_upgrades_an_envelope_of_an_earlier_build_in_both_slots()
    {
        var file = MakeDatabase("oldr.db");
        TestEnvelopes.MakeLegacy(file);

        TdeDatabases.Rewrap(file);

        AssertBothSlotsSigned(file);
        Assert.True(TdeDatabases.Status(file).EnvelopeAuthenticated);
        Assert.Equal(2000L, Count("oldr.db"));
    }

    [Fact]
    public void An_envelope_rewritten_in_the_old_format_without_a_MAC_is_refused_as_tampered()
    {
        var file = MakeDatabase("down.db");
        var envelope = TestEnvelopes.Read(file);
        Assert.True(envelope.ActiveDek.EnvelopeBound);

        // Both slots in format version 1 (which has no MAC), with the reservation lowered.
        var downgraded = envelope with { Sequence = envelope.Sequence + 1, Deks = envelope.Deks.Select(d => d with { SealsReserved = 1 }).ToList() };
        TestEnvelopes.WriteLegacy(file, downgraded);
        TestEnvelopes.WriteLegacy(file, downgraded with { Sequence = downgraded.Sequence + 1 });
        Assert.False(TdeDatabases.Status(file).EnvelopeAuthenticated);

        var e = OpenFails("down.db");

        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, e.Code);
        Assert.Contains("earlier builds", e.Message, StringComparison.Ordinal);
        Assert.Equal(TdeStorageException.Codes.EnvelopeTampered, Assert.Throws<TdeStorageException>(() => TdeDatabases.Rekey(file)).Code);
    }
}
