using System.Security.Cryptography;
using TdeEngine.Kms.Crypto;

namespace TdeEngine.Kms.Tests.Crypto;

public class Aes256GcmOneShotTests
{
    // Test cases 13 and 14 of the GCM specification (McGrew and Viega): 256-bit zero key, zero IV.
    [Theory]
    [InlineData("", "", "530f8afbc74536b9a963b4f1c4cb738b")]
    [InlineData("00000000000000000000000000000000", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919")]
    public void Encrypt_matches_the_GCM_specification_vectors(string plaintextHex, string ciphertextHex, string tagHex)
    {
        var key = new byte[32];
        var nonce = new byte[12];
        var plaintext = Convert.FromHexString(plaintextHex);
        var ciphertext = new byte[plaintext.Length];
        var tag = new byte[16];

        Aes256GcmOneShot.Encrypt(key, nonce, plaintext, [], ciphertext, tag);

        Assert.Equal(ciphertextHex, Convert.ToHexStringLower(ciphertext));
        Assert.Equal(tagHex, Convert.ToHexStringLower(tag));
    }

    [Fact]
    public void Libsodium_is_used_on_this_machine()
    {
        // The fast path is expected on x86-64 with AES-NI; if this fails the fallback is in use and benchmarks will show it.
        Assert.True(Aes256GcmOneShot.UsesLibsodium, "libsodium AES-256-GCM is not available; .NET AesGcm fallback is in use.");
    }

    [Fact]
    public void Output_interoperates_with_dotnet_AesGcm_both_ways()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var nonce = RandomNumberGenerator.GetBytes(12);
        var aad = RandomNumberGenerator.GetBytes(40);
        var plaintext = RandomNumberGenerator.GetBytes(1000);
        var ciphertext = new byte[plaintext.Length];
        var tag = new byte[16];

        Aes256GcmOneShot.Encrypt(key, nonce, plaintext, aad, ciphertext, tag);
        var opened = new byte[plaintext.Length];
        using (var aes = new AesGcm(key, 16))
        {
            aes.Decrypt(nonce, ciphertext, tag, opened, aad);
        }

        Assert.Equal(plaintext, opened);

        using (var aes = new AesGcm(key, 16))
        {
            aes.Encrypt(nonce, plaintext, ciphertext, tag, aad);
        }

        var again = new byte[plaintext.Length];
        Assert.True(Aes256GcmOneShot.TryDecrypt(key, nonce, ciphertext, tag, aad, again));
        Assert.Equal(plaintext, again);
    }

    [Fact]
    public void A_flipped_tag_bit_fails_and_zeroes_the_output()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var nonce = RandomNumberGenerator.GetBytes(12);
        var plaintext = RandomNumberGenerator.GetBytes(64);
        var ciphertext = new byte[64];
        var tag = new byte[16];
        Aes256GcmOneShot.Encrypt(key, nonce, plaintext, [], ciphertext, tag);
        tag[3] ^= 0x10;
        var output = Enumerable.Repeat((byte)0xAA, 64).ToArray();

        Assert.False(Aes256GcmOneShot.TryDecrypt(key, nonce, ciphertext, tag, [], output));
        Assert.All(output, b => Assert.Equal(0, b));
    }
}
