using TdeEngine.Kms.Envelope;

namespace TdeEngine.Disks;

/// <summary>What the header of a disk image says, read without a KMS call (see <see cref="EncryptedDisk.Inspect"/>).</summary>
/// <param name="DiskId">The disk id, <c>d-</c> and 20 lowercase hex characters.</param>
/// <param name="Size">Usable bytes.</param>
/// <param name="SectorSize">Bytes per sector: 512 or 4096.</param>
/// <param name="Cipher">The sector cipher: <c>XTS-AES-256</c>.</param>
/// <param name="KmsKeyArn">The ARN of the KMS key that wraps the disk's data key.</param>
/// <param name="Context">The EncryptionContext the data key is bound to.</param>
/// <param name="FormatVersion">The version of the image format (1).</param>
public sealed record EncryptedDiskInfo(string DiskId, long Size, int SectorSize, string Cipher, string KmsKeyArn, EncryptionContext Context, int FormatVersion)
{
    /// <summary>
    /// True when every sector was written (encrypted zeros) at creation: no sector reads as "never
    /// written", so zeroing a sector's ciphertext gives noise, not zeros (docs/disks.md).
    /// </summary>
    public bool Preallocated { get; init; }
}
