using System.Security.Cryptography;
using TdeEngine.Kms.Crypto;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Kms.Protection;

/// <summary>
/// Seals blobs under a software key version with <see cref="BlobAlgorithm.CtrSubkeyAes256Gcm"/>:
/// every blob gets its own AES-256 subkey (32 bytes of AES-256-CTR keystream of the version key
/// under <c>salt || 00000002</c>, with a 12-byte random salt) and a random 96-bit nonce. It also opens
/// <see cref="BlobAlgorithm.Aes256Gcm"/> blobs (version key used directly), which is how material
/// imported from elsewhere can be checked.
/// </summary>
/// <remarks>
/// Thread-safe. Owns the version key; disposing wipes it, after any seal or open in progress on
/// another thread has finished with it (each holds a <see cref="SecretLease"/>).
/// </remarks>
internal sealed class SoftwareKeyVersionCipher : IKeyVersionCipher
{
    private readonly SecretBuffer _key;

    public SoftwareKeyVersionCipher(SecretBuffer key)
    {
        if (key.Length != Aes256GcmOneShot.KeySize)
        {
            key.Dispose();
            throw new CryptographicException("A software key version must hold 32 bytes of material.");
        }

        _key = key;
    }

    public BlobAlgorithm Algorithm => BlobAlgorithm.CtrSubkeyAes256Gcm;

    public void Seal(ReadOnlySpan<byte> aad, ReadOnlySpan<byte> plaintext, Span<byte> nonceRegion, Span<byte> ciphertext, Span<byte> tag)
    {
        FastRandom.Fill(nonceRegion);
        Span<byte> subkey = stackalloc byte[Aes256GcmOneShot.KeySize];
        try
        {
            DeriveSubkey(nonceRegion[..CiphertextBlob.SaltLength], subkey);
            Aes256GcmOneShot.Encrypt(subkey, nonceRegion[CiphertextBlob.SaltLength..], plaintext, aad, ciphertext, tag);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(subkey);
        }
    }

    public bool TryOpen(BlobAlgorithm algorithm, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> nonceRegion, ReadOnlySpan<byte> ciphertext,
        ReadOnlySpan<byte> tag, Span<byte> plaintext)
    {
        if (algorithm == BlobAlgorithm.Aes256Gcm)
        {
            using var key = _key.Use();
            return Aes256GcmOneShot.TryDecrypt(key.Span, nonceRegion, ciphertext, tag, aad, plaintext);
        }

        Span<byte> subkey = stackalloc byte[Aes256GcmOneShot.KeySize];
        try
        {
            DeriveSubkey(nonceRegion[..CiphertextBlob.SaltLength], subkey);
            return Aes256GcmOneShot.TryDecrypt(subkey, nonceRegion[CiphertextBlob.SaltLength..], ciphertext, tag, aad, plaintext);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(subkey);
        }
    }

    public void Dispose() => _key.Dispose();

    // Under a lease: the key ring may drop (dispose) this cipher while a call still uses it.
    private void DeriveSubkey(ReadOnlySpan<byte> salt, Span<byte> subkey)
    {
        using var key = _key.Use();
        Aes256GcmOneShot.Keystream(key.Span, salt, subkey);
    }
}
