using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace TdeEngine.Kms.Crypto;

/// <summary>
/// One-shot AES-256-GCM with a 96-bit nonce and a 128-bit tag, keyed per call. It uses libsodium
/// (shipped with NSec) where the CPU has AES-NI and CLMUL, which measured faster than
/// <see cref="AesGcm"/> here and needs no per-key object; elsewhere it falls back to
/// <see cref="AesGcm"/>. Both produce identical bytes (the known-answer tests check this).
/// </summary>
/// <remarks>Thread-safe. Holds no key state: the caller owns and wipes the key.</remarks>
internal static unsafe class Aes256GcmOneShot
{
    public const int KeySize = 32;
    public const int NonceSize = 12;
    public const int TagSize = 16;

    private static readonly byte[] Zeros = new byte[4096];

    /// <summary>True when libsodium's AES-GCM is used; false when <see cref="AesGcm"/> is.</summary>
    public static bool UsesLibsodium => Sodium.Aes256GcmAvailable;

    public static void Encrypt(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext,
        ReadOnlySpan<byte> aad, Span<byte> ciphertext, Span<byte> tag)
    {
        CheckSizes(key, nonce, tag, plaintext.Length, ciphertext.Length);
        if (!UsesLibsodium)
        {
            using var aes = new AesGcm(key, TagSize);
            aes.Encrypt(nonce, plaintext, ciphertext, tag, aad);
            return;
        }

        fixed (byte* k = key, n = nonce, m = plaintext, a = aad, c = ciphertext, t = tag)
        {
            ulong tagLength;
            if (Sodium.crypto_aead_aes256gcm_encrypt_detached(c, t, &tagLength, m, (ulong)plaintext.Length, a, (ulong)aad.Length, null, n, k) != 0)
            {
                throw new CryptographicException("libsodium AES-256-GCM encryption failed.");
            }
        }
    }

    /// <summary>
    /// Writes the AES-256-CTR keystream that GCM uses under <paramref name="iv"/>: blocks
    /// AES_K(iv || 00000002), AES_K(iv || 00000003), ... It is the ciphertext of zeros, so any
    /// AES-CTR implementation reproduces it with the 16-byte counter block <c>iv || 00000002</c>.
    /// </summary>
    public static void Keystream(ReadOnlySpan<byte> key, ReadOnlySpan<byte> iv, Span<byte> output)
    {
        if (output.Length > Zeros.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(output), $"At most {Zeros.Length} bytes of keystream per call.");
        }

        Span<byte> tag = stackalloc byte[TagSize];
        Encrypt(key, iv, Zeros.AsSpan(0, output.Length), [], output, tag);
    }

    /// <summary>Decrypts and verifies. Returns false (and zeroes <paramref name="plaintext"/>) when the tag does not verify.</summary>
    public static bool TryDecrypt(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext,
        ReadOnlySpan<byte> tag, ReadOnlySpan<byte> aad, Span<byte> plaintext)
    {
        CheckSizes(key, nonce, tag, ciphertext.Length, plaintext.Length);
        if (!UsesLibsodium)
        {
            using var aes = new AesGcm(key, TagSize);
            try
            {
                aes.Decrypt(nonce, ciphertext, tag, plaintext, aad);
                return true;
            }
            catch (AuthenticationTagMismatchException)
            {
                CryptographicOperations.ZeroMemory(plaintext);
                return false;
            }
        }

        fixed (byte* k = key, n = nonce, m = plaintext, a = aad, c = ciphertext, t = tag)
        {
            if (Sodium.crypto_aead_aes256gcm_decrypt_detached(m, null, c, (ulong)ciphertext.Length, t, a, (ulong)aad.Length, n, k) != 0)
            {
                CryptographicOperations.ZeroMemory(plaintext);
                return false;
            }
        }

        return true;
    }

    private static void CheckSizes(ReadOnlySpan<byte> key, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> tag, int inputLength, int outputLength)
    {
        if (key.Length != KeySize || nonce.Length != NonceSize || tag.Length != TagSize || inputLength != outputLength)
        {
            throw new ArgumentException("AES-256-GCM needs a 32-byte key, a 12-byte nonce, a 16-byte tag and equal input and output lengths.");
        }
    }
}
