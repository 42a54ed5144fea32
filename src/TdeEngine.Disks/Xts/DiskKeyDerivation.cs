using System.Security.Cryptography;

namespace TdeEngine.Disks.Xts;

/// <summary>
/// Turns the 32-byte DEK from the KMS into the 64-byte XTS key:
/// <c>K1 ‖ K2 = HKDF-SHA256(IKM = DEK, salt = the 16-byte disk id, info = "TdeEngine/disk/xts-aes-256/v1", L = 64)</c>.
/// </summary>
/// <remarks>
/// The disk id as salt means two images that were (wrongly) given the same DEK still get different
/// XTS keys; a snapshot keeps the id of its disk, so it opens with the same key.
/// </remarks>
internal static class DiskKeyDerivation
{
    /// <summary>The DEK length the KMS returns.</summary>
    public const int DekSize = 32;

    /// <summary>The HKDF info string, which names the cipher and the version of this derivation.</summary>
    public static ReadOnlySpan<byte> Info => "TdeEngine/disk/xts-aes-256/v1"u8;

    /// <summary>Derives the XTS key into memory that is wiped before returning, and builds the cipher.</summary>
    public static XtsAes256 CreateCipher(ReadOnlySpan<byte> dek, ReadOnlySpan<byte> diskId)
    {
        Span<byte> key = stackalloc byte[XtsAes256.KeySize];
        try
        {
            HKDF.DeriveKey(HashAlgorithmName.SHA256, dek, key, diskId, Info);
            return new XtsAes256(key);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
    }
}
