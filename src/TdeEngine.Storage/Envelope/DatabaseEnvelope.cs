using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using TdeEngine.Kms.Envelope;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Envelope;

/// <summary>One wrapped DEK in an envelope.</summary>
/// <param name="Version">The DEK version, written in the trailer of every page it seals.</param>
/// <param name="Suite">The cipher suite the DEK is used with.</param>
/// <param name="SealsReserved">The high-water mark of pages sealed under this DEK (see <see cref="SealCounter"/>).</param>
/// <param name="WrappedDek">The KMS CiphertextBlob of the DEK (EncryptionContext <c>{"tde-db":"&lt;database id&gt;"}</c>).</param>
public sealed record EnvelopeDek(uint Version, PageCipherSuite Suite, ulong SealsReserved, byte[] WrappedDek);

/// <summary>
/// The envelope a TDE database carries in its first 4 KiB: everything needed to open it given
/// access to the KMS. It is stored twice (slots at offsets 0 and 2048) and written alternately, so
/// a torn write leaves the other slot intact; the slot with the highest valid sequence wins.
/// </summary>
/// <remarks>
/// Slot layout (big-endian integers):
/// <code>
///  0     8   magic "TDESQLv1"
///  8     2   format version = 1
///  10    2   L = bytes used by this slot, checksum included
///  12    8   sequence
///  20    16  database id
///  36    4   page size
///  40    1   reserved bytes per page
///  41    1   active cipher suite
///  42    4   active DEK version
///  46    2   K = length of the KMS key ARN, then K bytes UTF-8
///  .     1   n = number of DEKs (1..8), then n times:
///              4 version | 1 suite | 8 seals reserved | 2 B = blob length | B bytes KMS CiphertextBlob
///  L-32  32  SHA-256 of bytes [0, L-32)
/// </code>
/// </remarks>
public sealed record DatabaseEnvelope
{
    /// <summary>Bytes at the start of the file that belong to the envelope; SQLite's page 1 follows.</summary>
    public const int RegionSize = 4096;

    /// <summary>Bytes per slot.</summary>
    public const int SlotSize = 2048;

    /// <summary>The magic of an envelope slot.</summary>
    public static ReadOnlySpan<byte> Magic => "TDESQLv1"u8;

    private const int MaxDeks = 8;

    public required ulong Sequence { get; init; }
    public required byte[] DatabaseId { get; init; }
    public required int PageSize { get; init; }
    public required int Reserve { get; init; }
    public required PageCipherSuite Suite { get; init; }
    public required uint ActiveDekVersion { get; init; }
    public required string KmsKeyArn { get; init; }
    public required IReadOnlyList<EnvelopeDek> Deks { get; init; }

    /// <summary>The database id in hex, as used in the DEK's EncryptionContext.</summary>
    public string DatabaseIdHex => Convert.ToHexStringLower(DatabaseId);

    /// <summary>The EncryptionContext every DEK of this database is wrapped with.</summary>
    public EncryptionContext DekContext => ContextFor(DatabaseId);

    /// <summary>The active DEK entry.</summary>
    public EnvelopeDek ActiveDek => Deks.Single(d => d.Version == ActiveDekVersion);

    public static EncryptionContext ContextFor(ReadOnlySpan<byte> databaseId) =>
        EncryptionContext.From([new("tde-db", Convert.ToHexStringLower(databaseId))]);

    /// <summary>
    /// Writes a new envelope that reserves seals up to <paramref name="reserved"/> under DEK
    /// <paramref name="version"/>, and returns the envelope that holds it.
    /// </summary>
    /// <remarks>
    /// Another process can write the same slot from the same envelope meanwhile: in WAL mode a
    /// checkpoint seals pages under the checkpoint lock while a writer seals frames under the write
    /// lock, and a re-wrap writes under its own write transaction. The last write wins, so the
    /// envelope is read back: the one that wins must hold this reservation (or a higher one), or it
    /// is written again on top of the winner, keeping everything else the winner says (a re-wrapped
    /// DEK, another process's reservation).
    /// </remarks>
    internal static DatabaseEnvelope PersistReservation(string path, uint version, ulong reserved, Func<DatabaseEnvelope> read, Action<byte[], int> writeSlot)
    {
        for (var attempt = 1; ; attempt++)
        {
            var current = read();
            var deks = current.Deks.Select(d => d.Version == version
                ? d with { SealsReserved = Math.Max(d.SealsReserved, reserved) }
                : d).ToList();
            var next = current with { Sequence = current.Sequence + 1, Deks = deks };
            var slot = new byte[SlotSize];
            next.WriteSlot(slot);
            writeSlot(slot, SlotOffset(next.Sequence));
            var written = read();
            if (written.Deks.Any(d => d.Version == version && d.SealsReserved >= reserved))
            {
                return written;
            }

            if (attempt == 8)
            {
                throw new IOException($"The envelope of '{path}' kept changing while a seal reservation was written to it.");
            }
        }
    }

    /// <summary>Writes this envelope into a 2048-byte slot.</summary>
    public void WriteSlot(Span<byte> slot)
    {
        if (Deks.Count is 0 or > MaxDeks)
        {
            throw new InvalidOperationException("An envelope holds 1 to 8 DEKs.");
        }

        slot.Clear();
        Magic.CopyTo(slot);
        BinaryPrimitives.WriteUInt16BigEndian(slot[8..], 1);
        BinaryPrimitives.WriteUInt64BigEndian(slot[12..], Sequence);
        DatabaseId.CopyTo(slot[20..36]);
        BinaryPrimitives.WriteInt32BigEndian(slot[36..], PageSize);
        slot[40] = (byte)Reserve;
        slot[41] = (byte)Suite;
        BinaryPrimitives.WriteUInt32BigEndian(slot[42..], ActiveDekVersion);
        var arn = Encoding.UTF8.GetBytes(KmsKeyArn);
        var at = 46;
        BinaryPrimitives.WriteUInt16BigEndian(slot[at..], (ushort)arn.Length);
        arn.CopyTo(slot[(at + 2)..]);
        at += 2 + arn.Length;
        slot[at++] = (byte)Deks.Count;
        foreach (var dek in Deks)
        {
            BinaryPrimitives.WriteUInt32BigEndian(slot[at..], dek.Version);
            slot[at + 4] = (byte)dek.Suite;
            BinaryPrimitives.WriteUInt64BigEndian(slot[(at + 5)..], dek.SealsReserved);
            BinaryPrimitives.WriteUInt16BigEndian(slot[(at + 13)..], (ushort)dek.WrappedDek.Length);
            dek.WrappedDek.CopyTo(slot[(at + 15)..]);
            at += 15 + dek.WrappedDek.Length;
        }

        var length = at + 32;
        if (length > SlotSize)
        {
            throw new InvalidOperationException("The envelope does not fit its 2048-byte slot.");
        }

        BinaryPrimitives.WriteUInt16BigEndian(slot[10..], (ushort)length);
        SHA256.HashData(slot[..at], slot[at..length]);
    }

    /// <summary>Parses one slot; null when it is empty, torn or not an envelope.</summary>
    public static DatabaseEnvelope? TryReadSlot(ReadOnlySpan<byte> slot)
    {
        if (slot.Length < SlotSize || !slot[..8].SequenceEqual(Magic) || BinaryPrimitives.ReadUInt16BigEndian(slot[8..]) != 1)
        {
            return null;
        }

        int length = BinaryPrimitives.ReadUInt16BigEndian(slot[10..]);
        if (length is < 100 or > SlotSize)
        {
            return null;
        }

        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(slot[..(length - 32)], hash);
        if (!hash.SequenceEqual(slot[(length - 32)..length]))
        {
            return null;
        }

        try
        {
            var at = 46;
            int arnLength = BinaryPrimitives.ReadUInt16BigEndian(slot[at..]);
            var arn = Encoding.UTF8.GetString(slot.Slice(at + 2, arnLength));
            at += 2 + arnLength;
            int count = slot[at++];
            var deks = new List<EnvelopeDek>(count);
            for (var i = 0; i < count; i++)
            {
                int blobLength = BinaryPrimitives.ReadUInt16BigEndian(slot[(at + 13)..]);
                deks.Add(new EnvelopeDek(BinaryPrimitives.ReadUInt32BigEndian(slot[at..]), (PageCipherSuite)slot[at + 4],
                    BinaryPrimitives.ReadUInt64BigEndian(slot[(at + 5)..]), slot.Slice(at + 15, blobLength).ToArray()));
                at += 15 + blobLength;
            }

            var envelope = new DatabaseEnvelope
            {
                Sequence = BinaryPrimitives.ReadUInt64BigEndian(slot[12..]),
                DatabaseId = slot[20..36].ToArray(),
                PageSize = BinaryPrimitives.ReadInt32BigEndian(slot[36..]),
                Reserve = slot[40],
                Suite = (PageCipherSuite)slot[41],
                ActiveDekVersion = BinaryPrimitives.ReadUInt32BigEndian(slot[42..]),
                KmsKeyArn = arn,
                Deks = deks,
            };
            return envelope.IsConsistent() ? envelope : null;
        }
        catch (ArgumentOutOfRangeException)
        {
            return null;
        }
    }

    /// <summary>
    /// Reads the envelope region (the first 4096 bytes of the file). Throws a
    /// <see cref="TdeStorageException"/> that says what the file is when there is no valid envelope.
    /// </summary>
    public static DatabaseEnvelope Read(ReadOnlySpan<byte> region, string file)
    {
        var a = TryReadSlot(region[..SlotSize]);
        var b = TryReadSlot(region[SlotSize..RegionSize]);
        if (a is not null || b is not null)
        {
            return b is null || (a is not null && a.Sequence >= b.Sequence) ? a! : b;
        }

        if (region[..16].SequenceEqual("SQLite format 3\0"u8))
        {
            throw new TdeStorageException(TdeStorageException.Codes.PlaintextDatabase,
                $"'{file}' is a plaintext SQLite database, not a TDE database. Encrypt it with 'tde db encrypt' (or TdeDatabases.Encrypt), or open it without the tde VFS.",
                file);
        }

        if (region[..8].SequenceEqual(Magic))
        {
            throw new TdeStorageException(TdeStorageException.Codes.EnvelopeDamaged,
                $"Both envelope copies of '{file}' are damaged, so its DEK cannot be found. Restore the file from a backup.", file);
        }

        throw new TdeStorageException(TdeStorageException.Codes.NotTdeDatabase,
            $"'{file}' is not a TDE database (no TdeEngine envelope at its start).", file);
    }

    /// <summary>
    /// The id of the KMS key that wraps the DEKs, read from the wrapped DEKs themselves (every KMS
    /// CiphertextBlob names its key in a header its tag covers), not from <see cref="KmsKeyArn"/>.
    /// </summary>
    /// <remarks>
    /// The envelope's only integrity check is an unkeyed SHA-256, so anyone who can write the file
    /// can change <see cref="KmsKeyArn"/>; a re-wrap or a DEK re-encryption that took its destination
    /// key from there would wrap the DEK under a key of their choosing. Throws
    /// <c>Tde.EnvelopeKeyMismatch</c> when the field and the wrapped DEKs disagree, or the DEKs
    /// name different keys.
    /// </remarks>
    public string WrappingKeyId(string file)
    {
        string? keyId = null;
        foreach (var dek in Deks)
        {
            string id;
            try
            {
                id = CiphertextBlob.ReadHeader(dek.WrappedDek).KeyId;
            }
            catch (Exception e) when (e is not TdeStorageException)
            {
                throw new TdeStorageException(TdeStorageException.Codes.EnvelopeDamaged,
                    $"The wrapped DEK version {dek.Version} in the envelope of '{file}' is not a KMS ciphertext blob: {e.Message} Restore the file from a backup.", file, inner: e);
            }

            if (keyId is not null && id != keyId)
            {
                throw KeyMismatch(file, $"its DEKs are wrapped by different keys ({keyId} and {id})");
            }

            keyId = id;
        }

        var slash = KmsKeyArn.LastIndexOf('/');
        var named = slash >= 0 ? KmsKeyArn[(slash + 1)..] : KmsKeyArn;
        if (named != keyId)
        {
            throw KeyMismatch(file, $"it names the key '{KmsKeyArn}', but its DEK is wrapped by key {keyId}");
        }

        return keyId!;
    }

    private static TdeStorageException KeyMismatch(string file, string what) => new(TdeStorageException.Codes.EnvelopeKeyMismatch,
        $"The envelope of '{file}' does not agree with itself: {what}. The file was edited; nothing was changed. Check where the file came from, and restore it from a backup, or re-wrap it naming the key explicitly ('tde db rewrap --key <key id>').",
        file);

    /// <summary>The slot a new sequence number is written to (alternating).</summary>
    public static int SlotOffset(ulong sequence) => (int)(sequence % 2) * SlotSize;

    private bool IsConsistent() =>
        PageSize is >= 512 and <= 65536 && (PageSize & (PageSize - 1)) == 0 &&
        Enum.IsDefined(Suite) && Reserve == PageCipherSuites.ReserveBytes(Suite) &&
        Deks.Count(d => d.Version == ActiveDekVersion && d.Suite == Suite) == 1;
}
