using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Disks.Format;

/// <summary>
/// The header of a disk image: everything needed to attach it given access to the KMS. It is kept in
/// two 4096-byte slots at offsets 0 and 4096, written alternately (sequence <c>s</c> goes to slot
/// <c>s % 2</c>), so a torn write leaves the other slot intact; the valid slot with the highest
/// sequence wins. Data sectors start at <see cref="RegionSize"/>.
/// </summary>
/// <remarks>
/// Slot layout (big-endian integers; drawn again in docs/disks.md):
/// <code>
///  0     8   magic "TDEDISK\0"
///  8     2   format version = 1
///  10    2   cipher id = 1 (XTS-AES-256, key = HKDF-SHA256 of the DEK; sparse: an all-zero
///              sector was never written and reads as zeros) or 2 (the same, preallocated: every
///              sector was written at creation, and an all-zero sector is decrypted like any other)
///  12    4   sector size (512 or 4096)
///  16    8   disk size in bytes (usable; a multiple of the sector size)
///  24    16  disk id (random; the HKDF salt)
///  40    8   slot sequence (the higher valid one wins)
///  48    2   A = length of the KMS key ARN, then A bytes UTF-8
///  .     2   C = length of the canonical EncryptionContext, then C bytes UTF-8 JSON (0 when empty)
///  .     2   W = length of the wrapped DEK, then W bytes KMS CiphertextBlob
///  E     32  SHA-256 of bytes [0, E)
///  E+32  ..  zero up to 4096
/// </code>
/// </remarks>
internal sealed record DiskHeader
{
    /// <summary>Bytes per slot.</summary>
    public const int SlotSize = 4096;

    /// <summary>Bytes of the header region (two slots); the first data sector starts here.</summary>
    public const int RegionSize = 2 * SlotSize;

    /// <summary>The format version written and understood.</summary>
    public const ushort FormatVersion = 1;

    /// <summary>Cipher id 1: XTS-AES-256 with the key derived by HKDF-SHA256 from the DEK.</summary>
    public const ushort CipherXtsAes256 = 1;

    /// <summary>Cipher id 2: XTS-AES-256 as id 1, on a preallocated image (no sector is special).</summary>
    public const ushort CipherXtsAes256Preallocated = 2;

    /// <summary>The cipher's name, as <see cref="EncryptedDiskInfo.Cipher"/> shows it.</summary>
    public const string CipherName = "XTS-AES-256";

    /// <summary>Bytes of the disk id.</summary>
    public const int DiskIdSize = 16;

    private const int FixedSize = 48;
    private const int ChecksumSize = 32;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The magic at the start of each slot.</summary>
    public static ReadOnlySpan<byte> Magic => "TDEDISK\0"u8;

    public required ulong Sequence { get; init; }
    public required byte[] DiskId { get; init; }
    public required int SectorSize { get; init; }
    public required long Size { get; init; }
    public required string KmsKeyArn { get; init; }
    public required EncryptionContext Context { get; init; }
    public required byte[] WrappedDek { get; init; }

    /// <summary>True for a preallocated image (cipher id 2): every sector holds ciphertext, none is read as "never written".</summary>
    public bool Preallocated { get; init; }

    /// <summary>The id shown to users: <c>d-</c> and the first 10 bytes of the disk id in lowercase hex.</summary>
    public string DiskIdText => "d-" + Convert.ToHexStringLower(DiskId.AsSpan(0, 10));

    /// <summary>Whether a sector size is supported.</summary>
    public static bool IsSupportedSectorSize(int sectorSize) => sectorSize is 512 or 4096;

    /// <summary>The offset of the slot that sequence <paramref name="sequence"/> is written to.</summary>
    public static int SlotOffset(ulong sequence) => (int)(sequence % 2) * SlotSize;

    /// <summary>Bytes this header needs in its slot, checksum included.</summary>
    public int EncodedLength =>
        FixedSize + 2 + Encoding.UTF8.GetByteCount(KmsKeyArn) + 2 + Context.CanonicalBytes.Length + 2 + WrappedDek.Length + ChecksumSize;

    /// <summary>The public view of this header.</summary>
    public EncryptedDiskInfo ToInfo() =>
        new(DiskIdText, Size, SectorSize, CipherName, KmsKeyArn, Context, FormatVersion) { Preallocated = Preallocated };

    /// <summary>Writes this header into a 4096-byte slot (zero-filling the rest).</summary>
    public void WriteSlot(Span<byte> slot)
    {
        if (slot.Length != SlotSize || EncodedLength > SlotSize)
        {
            throw new InvalidOperationException($"The disk header needs {EncodedLength} bytes; a slot has {SlotSize}.");
        }

        slot.Clear();
        Magic.CopyTo(slot);
        BinaryPrimitives.WriteUInt16BigEndian(slot[8..], FormatVersion);
        BinaryPrimitives.WriteUInt16BigEndian(slot[10..], Preallocated ? CipherXtsAes256Preallocated : CipherXtsAes256);
        BinaryPrimitives.WriteInt32BigEndian(slot[12..], SectorSize);
        BinaryPrimitives.WriteInt64BigEndian(slot[16..], Size);
        DiskId.CopyTo(slot[24..40]);
        BinaryPrimitives.WriteUInt64BigEndian(slot[40..], Sequence);
        var at = FixedSize;
        at = WriteField(slot, at, Encoding.UTF8.GetBytes(KmsKeyArn));
        at = WriteField(slot, at, Context.CanonicalBytes);
        at = WriteField(slot, at, WrappedDek);
        SHA256.HashData(slot[..at], slot.Slice(at, ChecksumSize));
    }

    /// <summary>Parses one slot; null when it is empty, torn, damaged or not a disk header.</summary>
    public static DiskHeader? TryReadSlot(ReadOnlySpan<byte> slot)
    {
        if (slot.Length < SlotSize || !slot[..8].SequenceEqual(Magic) ||
            BinaryPrimitives.ReadUInt16BigEndian(slot[8..]) != FormatVersion ||
            BinaryPrimitives.ReadUInt16BigEndian(slot[10..]) is not (CipherXtsAes256 or CipherXtsAes256Preallocated))
        {
            return null;
        }

        var preallocated = BinaryPrimitives.ReadUInt16BigEndian(slot[10..]) == CipherXtsAes256Preallocated;

        var sectorSize = BinaryPrimitives.ReadInt32BigEndian(slot[12..]);
        var size = BinaryPrimitives.ReadInt64BigEndian(slot[16..]);
        if (!IsSupportedSectorSize(sectorSize) || size <= 0 || size % sectorSize != 0 || size > long.MaxValue - RegionSize)
        {
            return null;
        }

        var at = FixedSize;
        if (!TryReadField(slot, ref at, out var arn) || !TryReadField(slot, ref at, out var context) ||
            !TryReadField(slot, ref at, out var wrapped) || wrapped.IsEmpty || at + ChecksumSize > SlotSize)
        {
            return null;
        }

        Span<byte> hash = stackalloc byte[ChecksumSize];
        SHA256.HashData(slot[..at], hash);
        if (!CryptographicOperations.FixedTimeEquals(hash, slot.Slice(at, ChecksumSize)))
        {
            return null;
        }

        try
        {
            var parsedContext = EncryptionContext.Parse(StrictUtf8.GetString(context));
            if (!parsedContext.CanonicalBytes.SequenceEqual(context))
            {
                return null;   // a context this code did not write: its canonical form differs
            }

            return new DiskHeader
            {
                Sequence = BinaryPrimitives.ReadUInt64BigEndian(slot[40..]),
                DiskId = slot[24..40].ToArray(),
                SectorSize = sectorSize,
                Size = size,
                KmsKeyArn = StrictUtf8.GetString(arn),
                Context = parsedContext,
                WrappedDek = wrapped.ToArray(),
                Preallocated = preallocated,
            };
        }
        catch (Exception e) when (e is DecoderFallbackException or KmsException)
        {
            return null;
        }
    }

    /// <summary>
    /// Reads the header region (the first <see cref="RegionSize"/> bytes of the file, or fewer when
    /// the file is shorter). Throws a <see cref="TdeStorageException"/> that says what the file is
    /// when no slot is valid.
    /// </summary>
    public static DiskHeader Read(ReadOnlySpan<byte> region, string file)
    {
        // A slot only counts where its sequence belongs (even at 0, odd at 4096), so a rewrite never
        // lands on the slot it was read from.
        var a = region.Length >= SlotSize ? TryReadSlot(region[..SlotSize]) : null;
        var b = region.Length >= RegionSize ? TryReadSlot(region[SlotSize..RegionSize]) : null;
        a = a is not null && SlotOffset(a.Sequence) == 0 ? a : null;
        b = b is not null && SlotOffset(b.Sequence) == SlotSize ? b : null;
        if (a is not null || b is not null)
        {
            return b is null || (a is not null && a.Sequence >= b.Sequence) ? a! : b;
        }

        if (region.StartsWith(Magic) || (region.Length >= SlotSize + Magic.Length && region[SlotSize..].StartsWith(Magic)))
        {
            throw new TdeStorageException(TdeStorageException.Codes.EnvelopeDamaged,
                $"Both header copies of the disk image '{file}' are damaged, so its data key cannot be found. Restore the image (or a snapshot of it) from a backup.",
                file);
        }

        throw new TdeStorageException(TdeStorageException.Codes.NotTdeDisk,
            $"'{file}' is not a TdeEngine disk image (no \"TDEDISK\" header at its start). Create one with EncryptedDisk.Create (from the command line: tde disk create).", file);
    }

    private static int WriteField(Span<byte> slot, int at, ReadOnlySpan<byte> value)
    {
        BinaryPrimitives.WriteUInt16BigEndian(slot[at..], checked((ushort)value.Length));
        value.CopyTo(slot[(at + 2)..]);
        return at + 2 + value.Length;
    }

    private static bool TryReadField(ReadOnlySpan<byte> slot, ref int at, out ReadOnlySpan<byte> value)
    {
        value = default;
        if (at + 2 > SlotSize)
        {
            return false;
        }

        int length = BinaryPrimitives.ReadUInt16BigEndian(slot[at..]);
        if (at + 2 + length > SlotSize)
        {
            return false;
        }

        value = slot.Slice(at + 2, length);
        at += 2 + length;
        return true;
    }
}
