using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using TdeEngine.Kms.Envelope;
using TdeEngine.Storage.Envelope;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Vfs;

namespace TdeEngine.Sqlite.Tests;

/// <summary>Reads and writes envelope slots the way this build, an attacker, or an earlier build would.</summary>
internal static class TestEnvelopes
{
    public static byte[] Region(string file)
    {
        using var raw = RawDatabaseFile.Open(file, writable: false);
        var region = new byte[DatabaseEnvelope.RegionSize];
        raw.Read(region, 0);
        return region;
    }

    public static DatabaseEnvelope Read(string file) => DatabaseEnvelope.Read(Region(file), file);

    /// <summary>The envelope in slot 0 or 1, or null when that slot holds none.</summary>
    public static DatabaseEnvelope? Slot(string file, int index) =>
        DatabaseEnvelope.TryReadSlot(Region(file).AsSpan(index * DatabaseEnvelope.SlotSize, DatabaseEnvelope.SlotSize));

    /// <summary>The MAC key of the envelope's active DEK (unwrapped through the VFS's cache).</summary>
    public static EnvelopeMacKey MacKey(DatabaseEnvelope envelope)
    {
        using var dek = TdeVfs.Current.Keys.Get(envelope.ActiveDek.WrappedDek, envelope.ContextOf(envelope.ActiveDek));
        return EnvelopeMacKey.Derive(dek.Span);
    }

    /// <summary>True when the slot's envelope has a MAC and it verifies under the active DEK.</summary>
    public static bool MacVerifies(string file, DatabaseEnvelope envelope)
    {
        using var key = MacKey(envelope);
        try
        {
            envelope.VerifyMac(key, file, requireMac: true);
            return true;
        }
        catch (Storage.Errors.TdeStorageException)
        {
            return false;
        }
    }

    /// <summary>As this build writes it (another process, say): with a valid MAC, in the slot its sequence picks.</summary>
    public static void WriteSigned(string file, DatabaseEnvelope envelope)
    {
        var slot = new byte[DatabaseEnvelope.SlotSize];
        using (var key = MacKey(envelope))
        {
            envelope.WriteSlot(slot, key);
        }

        WriteSlot(file, slot, DatabaseEnvelope.SlotOffset(envelope.Sequence));
    }

    /// <summary>As someone without the DEK writes it: fields edited, a MAC they had to guess, the SHA-256 recomputed.</summary>
    public static void WriteWithGuessedMac(string file, DatabaseEnvelope envelope)
    {
        var slot = new byte[DatabaseEnvelope.SlotSize];
        using (var guess = EnvelopeMacKey.Derive(RandomNumberGenerator.GetBytes(32)))
        {
            envelope.WriteSlot(slot, guess);
        }

        WriteSlot(file, slot, DatabaseEnvelope.SlotOffset(envelope.Sequence));
    }

    /// <summary>In format version 1, as builds before the MAC wrote it (no flags byte, no MAC).</summary>
    public static void WriteLegacy(string file, DatabaseEnvelope envelope)
    {
        var slot = new byte[DatabaseEnvelope.SlotSize];
        DatabaseEnvelope.Magic.CopyTo(slot);
        BinaryPrimitives.WriteUInt16BigEndian(slot.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt64BigEndian(slot.AsSpan(12), envelope.Sequence);
        envelope.DatabaseId.CopyTo(slot, 20);
        BinaryPrimitives.WriteInt32BigEndian(slot.AsSpan(36), envelope.PageSize);
        slot[40] = (byte)envelope.Reserve;
        slot[41] = (byte)envelope.Suite;
        BinaryPrimitives.WriteUInt32BigEndian(slot.AsSpan(42), envelope.ActiveDekVersion);
        var arn = Encoding.UTF8.GetBytes(envelope.KmsKeyArn);
        BinaryPrimitives.WriteUInt16BigEndian(slot.AsSpan(46), (ushort)arn.Length);
        arn.CopyTo(slot, 48);
        var at = 48 + arn.Length;
        slot[at++] = (byte)envelope.Deks.Count;
        foreach (var dek in envelope.Deks)
        {
            BinaryPrimitives.WriteUInt32BigEndian(slot.AsSpan(at), dek.Version);
            slot[at + 4] = (byte)dek.Suite;
            BinaryPrimitives.WriteUInt64BigEndian(slot.AsSpan(at + 5), dek.SealsReserved);
            BinaryPrimitives.WriteUInt16BigEndian(slot.AsSpan(at + 13), (ushort)dek.WrappedDek.Length);
            dek.WrappedDek.CopyTo(slot, at + 15);
            at += 15 + dek.WrappedDek.Length;
        }

        BinaryPrimitives.WriteUInt16BigEndian(slot.AsSpan(10), (ushort)(at + 32));
        SHA256.HashData(slot.AsSpan(0, at), slot.AsSpan(at, 32));
        WriteSlot(file, slot, DatabaseEnvelope.SlotOffset(envelope.Sequence));
    }

    /// <summary>
    /// Turns a database this build made into one as an earlier build made it: its DEKs wrapped with
    /// the old EncryptionContext (<c>{"tde-db":…}</c> only), and both slots in format version 1.
    /// </summary>
    public static void MakeLegacy(string file)
    {
        var envelope = Read(file);
        var legacyContext = DatabaseEnvelope.ContextFor(envelope.DatabaseId, envelopeBound: false);
        var deks = envelope.Deks.Select(d => d with
        {
            EnvelopeBound = false,
            WrappedDek = TdeTestEnvironment.Kms.ReEncrypt(TdeTestEnvironment.Caller, d.WrappedDek, CiphertextBlob.ReadHeader(d.WrappedDek).KeyId,
                envelope.ContextOf(d), legacyContext).CiphertextBlob,
        }).ToList();
        var legacy = envelope with { Sequence = envelope.Sequence + 1, Deks = deks };
        WriteLegacy(file, legacy);
        WriteLegacy(file, legacy with { Sequence = legacy.Sequence + 1 });
    }

    public static void WriteSlot(string file, byte[] slot, int offset)
    {
        using var raw = RawDatabaseFile.Open(file, writable: true);
        raw.Write(slot, offset);
    }
}
