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
public sealed record EnvelopeDek(uint Version, PageCipherSuite Suite, ulong SealsReserved, byte[] WrappedDek)
{
    /// <summary>
    /// True when the DEK is wrapped with the EncryptionContext of authenticated envelopes
    /// (<c>{"tde-db":"&lt;id&gt;","tde-envelope":"2"}</c>): the KMS then unwraps it only for an
    /// envelope of format version 2, so rewriting the envelope in the old, unauthenticated format
    /// makes it unusable. DEKs made by earlier builds are not (flag bit 0 of their entry).
    /// </summary>
    public bool EnvelopeBound { get; init; }
}

/// <summary>
/// The envelope a TDE database carries in its first 4 KiB: everything needed to open it given
/// access to the KMS. It is stored twice (slots at offsets 0 and 2048) and written alternately, so
/// a torn write leaves the other slot intact; the slot with the highest valid sequence wins.
/// </summary>
/// <remarks>
/// Slot layout (big-endian integers); format version 1 (earlier builds) has no flags byte and no MAC:
/// <code>
///  0     8   magic "TDESQLv1"
///  8     2   format version = 2 (1: earlier builds, read only)
///  10    2   L = bytes used by this slot, MAC and checksum included
///  12    8   sequence
///  20    16  database id
///  36    4   page size
///  40    1   reserved bytes per page
///  41    1   active cipher suite
///  42    4   active DEK version
///  46    2   K = length of the KMS key ARN, then K bytes UTF-8
///  .     1   n = number of DEKs (1..8), then n times:
///              4 version | 1 suite | 1 flags (v2 only; bit 0: EnvelopeBound; bit 1, active entry only: Empty) | 8 seals reserved |
///              2 B = blob length | B bytes KMS CiphertextBlob
///  L-64  32  HMAC-SHA256 of bytes [0, L-64) under HKDF-SHA256(active DEK, info "TdeEngine envelope MAC v1")   (v2 only)
///  L-32  32  SHA-256 of bytes [0, L-32)
/// </code>
/// The SHA-256 (no key) tells a torn or damaged slot apart, so the other slot can be used; the
/// HMAC (keyed by the active DEK) tells an edited one, and is checked once the active DEK is
/// unwrapped (<see cref="VerifyMac"/>).
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

    /// <summary>The format version this build writes: every envelope it writes carries a MAC.</summary>
    public const ushort AuthenticatedVersion = 2;

    /// <summary>The format version of earlier builds (no MAC); read, and upgraded on the next write.</summary>
    public const ushort LegacyVersion = 1;

    /// <summary>The format version of the slot this envelope was read from (<see cref="LegacyVersion"/> or <see cref="AuthenticatedVersion"/>).</summary>
    public ushort FormatVersion { get; init; } = AuthenticatedVersion;

    /// <summary>True when this envelope was read from a slot with a MAC (see <see cref="VerifyMac"/>).</summary>
    public bool Authenticated => FormatVersion >= AuthenticatedVersion;

    // As read from the slot (null for an envelope made in memory): the bytes the MAC covers, and the MAC.
    private byte[]? _macInput;
    private byte[]? _mac;

    public DatabaseEnvelope()
    {
    }

    // What `with` uses: a changed copy is no longer the envelope that was read, so it carries no MAC
    // to check (VerifyMac fails on it) until it is written again.
    private DatabaseEnvelope(DatabaseEnvelope original)
    {
        Sequence = original.Sequence;
        DatabaseId = original.DatabaseId;
        PageSize = original.PageSize;
        Reserve = original.Reserve;
        Suite = original.Suite;
        ActiveDekVersion = original.ActiveDekVersion;
        KmsKeyArn = original.KmsKeyArn;
        Deks = original.Deks;
        FormatVersion = original.FormatVersion;
        Empty = original.Empty;
    }

    public required ulong Sequence { get; init; }
    public required byte[] DatabaseId { get; init; }
    public required int PageSize { get; init; }
    public required int Reserve { get; init; }
    public required PageCipherSuite Suite { get; init; }
    public required uint ActiveDekVersion { get; init; }
    public required string KmsKeyArn { get; init; }
    public required IReadOnlyList<EnvelopeDek> Deks { get; init; }

    /// <summary>
    /// True when the file holds no page on purpose: it was created and SQLite has not written page 1
    /// yet, or SQLite itself truncated it to no page (a rollback of the first transaction). A file
    /// that holds no page while this is false was truncated. Stored as flag bit 1 of the active DEK's
    /// entry. Earlier builds refuse an envelope with this bit as damaged; once a database holds pages
    /// the bit is clear in both slots, and its envelope is what they wrote.
    /// </summary>
    public bool Empty { get; init; }

    /// <summary>The database id in hex, as used in the DEK's EncryptionContext.</summary>
    public string DatabaseIdHex => Convert.ToHexStringLower(DatabaseId);

    /// <summary>The EncryptionContext a DEK of this database is wrapped with (see <see cref="EnvelopeDek.EnvelopeBound"/>).</summary>
    public EncryptionContext ContextOf(EnvelopeDek dek) => ContextFor(DatabaseId, dek.EnvelopeBound);

    /// <summary>The active DEK entry.</summary>
    public EnvelopeDek ActiveDek => Deks.Single(d => d.Version == ActiveDekVersion);

    /// <summary>
    /// The EncryptionContext of a DEK: <c>{"tde-db":"&lt;id&gt;"}</c>, plus <c>"tde-envelope":"2"</c>
    /// for a DEK made by this build (<paramref name="envelopeBound"/>), which binds it to envelopes that carry a MAC.
    /// </summary>
    public static EncryptionContext ContextFor(ReadOnlySpan<byte> databaseId, bool envelopeBound) => envelopeBound
        ? EncryptionContext.From([new("tde-db", Convert.ToHexStringLower(databaseId)), new("tde-envelope", "2")])
        : EncryptionContext.From([new("tde-db", Convert.ToHexStringLower(databaseId))]);

    /// <summary>
    /// Writes a new envelope that reserves seals up to <paramref name="reserved"/> under DEK
    /// <paramref name="version"/>, and returns the envelope that holds it (see <see cref="Persist"/>).
    /// </summary>
    internal static DatabaseEnvelope PersistReservation(string path, uint version, ulong reserved, Func<DatabaseEnvelope> read,
        Func<DatabaseEnvelope, EnvelopeMacKey> authenticate, Action<byte[], int> writeSlot) =>
        Persist(path, "a seal reservation",
            current => current with
            {
                Deks = current.Deks.Select(d => d.Version == version ? d with { SealsReserved = Math.Max(d.SealsReserved, reserved) } : d).ToList(),
            },
            written => written.Deks.Any(d => d.Version == version && d.SealsReserved >= reserved),
            read, authenticate, writeSlot);

    /// <summary>
    /// Writes the envelope read from the file, changed by <paramref name="change"/>, as the next
    /// sequence, and returns the envelope that holds the change (<paramref name="holds"/>).
    /// </summary>
    /// <remarks>
    /// Another process can write the same slot from the same envelope meanwhile: in WAL mode a
    /// checkpoint seals pages under the checkpoint lock while a writer seals frames under the write
    /// lock, and a re-wrap writes under its own write transaction. The last write wins, so the
    /// envelope is read back: the one that wins must hold this change, or it is written again on
    /// top of the winner, keeping everything else the winner says (a re-wrapped DEK, another
    /// process's reservation).
    /// <para>
    /// <paramref name="authenticate"/> checks the MAC of the envelope read (so an edited envelope is
    /// never signed again) and returns the MAC key of its active DEK, which the caller disposes.
    /// </para>
    /// </remarks>
    internal static DatabaseEnvelope Persist(string path, string what, Func<DatabaseEnvelope, DatabaseEnvelope> change, Func<DatabaseEnvelope, bool> holds,
        Func<DatabaseEnvelope> read, Func<DatabaseEnvelope, EnvelopeMacKey> authenticate, Action<byte[], int> writeSlot)
    {
        for (var attempt = 1; ; attempt++)
        {
            var current = read();
            var next = change(current) with { Sequence = current.Sequence + 1 };
            var slot = new byte[SlotSize];
            using (var macKey = authenticate(current))
            {
                next.WriteSlot(slot, macKey);
            }

            writeSlot(slot, SlotOffset(next.Sequence));
            var written = read();
            if (holds(written))
            {
                return written;
            }

            if (attempt == 8)
            {
                throw new IOException($"The envelope of '{path}' kept changing while {what} was written to it.");
            }
        }
    }

    /// <summary>
    /// Writes this envelope into a 2048-byte slot, in format version 2, with its MAC under
    /// <paramref name="macKey"/>, which must be the MAC key of the active DEK.
    /// </summary>
    internal void WriteSlot(Span<byte> slot, EnvelopeMacKey macKey)
    {
        if (Deks.Count is 0 or > MaxDeks)
        {
            throw new InvalidOperationException("An envelope holds 1 to 8 DEKs.");
        }

        slot.Clear();
        Magic.CopyTo(slot);
        BinaryPrimitives.WriteUInt16BigEndian(slot[8..], AuthenticatedVersion);
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
            slot[at + 5] = (byte)((dek.EnvelopeBound ? FlagEnvelopeBound : 0) | (Empty && dek.Version == ActiveDekVersion ? FlagEmpty : 0));
            BinaryPrimitives.WriteUInt64BigEndian(slot[(at + 6)..], dek.SealsReserved);
            BinaryPrimitives.WriteUInt16BigEndian(slot[(at + 14)..], (ushort)dek.WrappedDek.Length);
            dek.WrappedDek.CopyTo(slot[(at + 16)..]);
            at += 16 + dek.WrappedDek.Length;
        }

        var length = at + EnvelopeMacKey.Size + 32;
        if (length > SlotSize)
        {
            throw new InvalidOperationException("The envelope does not fit its 2048-byte slot.");
        }

        // The MAC covers every byte before it, length field included; the checksum covers the MAC too.
        BinaryPrimitives.WriteUInt16BigEndian(slot[10..], (ushort)length);
        macKey.Compute(slot[..at], slot[at..(at + EnvelopeMacKey.Size)]);
        SHA256.HashData(slot[..(length - 32)], slot[(length - 32)..length]);
    }

    private const byte FlagEnvelopeBound = 0x01;
    private const byte FlagEmpty = 0x02;

    /// <summary>
    /// Checks the MAC of an envelope read from a file with the MAC key of its active DEK; throws
    /// <c>Tde.EnvelopeTampered</c> when it fails. An envelope of an earlier build (format version
    /// 1) has no MAC and passes, unless <paramref name="requireMac"/> (this file was seen with a
    /// MAC before, so a version-1 envelope now is a downgrade).
    /// </summary>
    internal void VerifyMac(EnvelopeMacKey activeMacKey, string file, bool requireMac = false)
    {
        if (!Authenticated)
        {
            if (requireMac)
            {
                throw Tampered(file, "it was rewritten in the format of earlier builds, which has no MAC, after it had been written with one");
            }

            return;
        }

        if (_macInput is null || _mac is null || !activeMacKey.Verify(_macInput, _mac))
        {
            throw Tampered(file, "its MAC does not match");
        }
    }

    internal static TdeStorageException Tampered(string file, string what) => new(TdeStorageException.Codes.EnvelopeTampered,
        $"The envelope of '{file}' failed authentication: {what}. It was edited after it was written (for example its seal reservation or its key ARN); nothing was changed. Restore the file from a backup.",
        file);

    /// <summary>Parses one slot; null when it is empty, torn or not an envelope.</summary>
    public static DatabaseEnvelope? TryReadSlot(ReadOnlySpan<byte> slot)
    {
        if (slot.Length < SlotSize || !slot[..8].SequenceEqual(Magic))
        {
            return null;
        }

        var version = BinaryPrimitives.ReadUInt16BigEndian(slot[8..]);
        if (version is not (LegacyVersion or AuthenticatedVersion))
        {
            return null;
        }

        var authenticated = version == AuthenticatedVersion;
        var entryHeader = authenticated ? 16 : 15;   // the flags byte is new in version 2

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
            var activeVersion = BinaryPrimitives.ReadUInt32BigEndian(slot[42..]);
            var empty = false;
            for (var i = 0; i < count; i++)
            {
                var flags = authenticated ? slot[at + 5] : (byte)0;
                var fields = at + entryHeader - 10;   // seals reserved, then the blob length
                int blobLength = BinaryPrimitives.ReadUInt16BigEndian(slot[(fields + 8)..]);
                deks.Add(new EnvelopeDek(BinaryPrimitives.ReadUInt32BigEndian(slot[at..]), (PageCipherSuite)slot[at + 4],
                    BinaryPrimitives.ReadUInt64BigEndian(slot[fields..]), slot.Slice(at + entryHeader, blobLength).ToArray())
                {
                    EnvelopeBound = (flags & FlagEnvelopeBound) != 0,
                });
                if ((flags & FlagEmpty) != 0)
                {
                    if (deks[^1].Version != activeVersion)
                    {
                        return null;
                    }

                    empty = true;
                }

                if ((flags & ~(FlagEnvelopeBound | FlagEmpty)) != 0)
                {
                    return null;
                }

                at += entryHeader + blobLength;
            }

            // Version 2 is canonical: the DEK entries end exactly where the MAC starts.
            if (authenticated && at != length - 32 - EnvelopeMacKey.Size)
            {
                return null;
            }

            var envelope = new DatabaseEnvelope
            {
                Sequence = BinaryPrimitives.ReadUInt64BigEndian(slot[12..]),
                DatabaseId = slot[20..36].ToArray(),
                PageSize = BinaryPrimitives.ReadInt32BigEndian(slot[36..]),
                Reserve = slot[40],
                Suite = (PageCipherSuite)slot[41],
                ActiveDekVersion = activeVersion,
                KmsKeyArn = arn,
                Empty = empty,
                Deks = deks,
                FormatVersion = version,
                _macInput = authenticated ? slot[..at].ToArray() : null,
                _mac = authenticated ? slot.Slice(at, EnvelopeMacKey.Size).ToArray() : null,
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
    /// An envelope of an earlier build (format version 1) has only an unkeyed SHA-256, so anyone who
    /// can write the file can change <see cref="KmsKeyArn"/> there; a re-wrap or a DEK re-encryption that took its destination
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

    // Every DEK is one this build can key a cipher with, under a version no other entry has (each
    // entry is unwrapped into the cipher of its version, before the MAC can be checked).
    private bool IsConsistent() =>
        PageSize is >= 512 and <= 65536 && (PageSize & (PageSize - 1)) == 0 &&
        Enum.IsDefined(Suite) && Reserve == PageCipherSuites.ReserveBytes(Suite) &&
        Deks.Count(d => d.Version == ActiveDekVersion && d.Suite == Suite) == 1 &&
        Deks.All(d => Enum.IsDefined(d.Suite)) && Deks.DistinctBy(d => d.Version).Count() == Deks.Count;
}
