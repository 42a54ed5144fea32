using System.Security.Cryptography;
using System.Text;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Protection;
using TdeEngine.Kms.Secrets;
using TdeEngine.Kms.Tests.Infrastructure;

namespace TdeEngine.Kms.Tests.Envelope;

public sealed class CiphertextBlobTests : IDisposable
{
    private const string KeyId = "0b8a3f2e-1111-4222-8333-444455556666";
    private const string VersionId = "9c1d2e3f-aaaa-4bbb-8ccc-ddddeeeeffff";
    private readonly byte[] _material = RandomNumberGenerator.GetBytes(32);
    private readonly SoftwareKeyVersionCipher _cipher;

    public CiphertextBlobTests() => _cipher = new SoftwareKeyVersionCipher(SecretBuffer.CopyFrom(_material));

    public void Dispose() => _cipher.Dispose();

    [Fact]
    public void Header_is_laid_out_as_documented()
    {
        var blob = CiphertextBlob.Seal(_cipher, KeyId, VersionId, EncryptionContext.Empty, new byte[32]);

        Assert.Equal("TKMS"u8.ToArray(), blob[..4]);
        Assert.Equal(1, blob[4]);
        Assert.Equal((byte)BlobAlgorithm.CtrSubkeyAes256Gcm, blob[5]);
        Assert.Equal(KeyId.Length, blob[6]);
        Assert.Equal(KeyId, Encoding.ASCII.GetString(blob, 7, KeyId.Length));
        Assert.Equal(VersionId.Length, blob[7 + KeyId.Length]);
        Assert.Equal(VersionId, Encoding.ASCII.GetString(blob, 8 + KeyId.Length, VersionId.Length));
        Assert.Equal(8 + KeyId.Length + VersionId.Length + 12 + 12 + 32 + 16, blob.Length);
    }

    [Fact]
    public void An_independent_AES_and_AesGcm_implementation_opens_a_blob()
    {
        // What docs/file-format.md tells a customer who holds the raw key material to do.
        var context = EncryptionContext.Parse("{\"db\":\"orders\",\"tenant\":\"t1\"}");
        var plaintext = Encoding.UTF8.GetBytes("hello, standard tools");
        var blob = CiphertextBlob.Seal(_cipher, KeyId, VersionId, context, plaintext);

        var h = 8 + blob[6] + blob[7 + blob[6]];
        var salt = blob.AsSpan(h, 12).ToArray();
        var nonce = blob.AsSpan(h + 12, 12);
        var ciphertext = blob.AsSpan(h + 24, blob.Length - h - 24 - 16);
        var tag = blob.AsSpan(blob.Length - 16);
        // subkey = AES-256-ECB_K(salt || 00000002) || AES-256-ECB_K(salt || 00000003), i.e. AES-CTR keystream.
        using var ecb = Aes.Create();
        ecb.Key = _material;
        var counterBlocks = salt.Concat(new byte[] { 0, 0, 0, 2 }).Concat(salt).Concat(new byte[] { 0, 0, 0, 3 }).ToArray();
        var subkey = ecb.EncryptEcb(counterBlocks, PaddingMode.None);
        var aad = blob[..h].Concat(Encoding.UTF8.GetBytes("{\"db\":\"orders\",\"tenant\":\"t1\"}")).ToArray();
        var opened = new byte[ciphertext.Length];
        using var aes = new AesGcm(subkey, 16);
        aes.Decrypt(nonce, ciphertext, tag, opened, aad);

        Assert.Equal(plaintext, opened);
    }

    [Fact]
    public void A_direct_AES_GCM_blob_made_with_standard_tools_opens()
    {
        // Algorithm 1 (used by HSM keys): AES-256-GCM under the version key itself.
        var header = new List<byte>("TKMS"u8.ToArray()) { 1, (byte)BlobAlgorithm.Aes256Gcm, (byte)KeyId.Length };
        header.AddRange(Encoding.ASCII.GetBytes(KeyId));
        header.Add((byte)VersionId.Length);
        header.AddRange(Encoding.ASCII.GetBytes(VersionId));
        var nonce = RandomNumberGenerator.GetBytes(12);
        var plaintext = RandomNumberGenerator.GetBytes(32);
        var ciphertext = new byte[32];
        var tag = new byte[16];
        using (var aes = new AesGcm(_material, 16))
        {
            aes.Encrypt(nonce, plaintext, ciphertext, tag, header.ToArray());
        }

        var blob = header.Concat(nonce).Concat(ciphertext).Concat(tag).ToArray();
        var parsed = CiphertextBlob.ReadHeader(blob);
        var opened = new byte[parsed.PlaintextLength];
        CiphertextBlob.Open(_cipher, parsed, blob, EncryptionContext.Empty, opened);

        Assert.Equal(plaintext, opened);
    }

    [Fact]
    public void Every_single_byte_change_is_detected()
    {
        var context = EncryptionContext.Parse("{\"a\":\"b\"}");
        var blob = CiphertextBlob.Seal(_cipher, KeyId, VersionId, context, new byte[24]);
        var headerLength = 8 + KeyId.Length + VersionId.Length;

        for (var i = 0; i < blob.Length; i++)
        {
            var tampered = (byte[])blob.Clone();
            tampered[i] ^= 0x01;
            var e = Assert.Throws<KmsException>(() =>
            {
                var header = CiphertextBlob.ReadHeader(tampered);
                if (header.KeyId != KeyId || header.KeyVersionId != VersionId)
                {
                    // A changed id would make the KMS look up another key; here the AAD still binds the original.
                    Assert.True(i < headerLength);
                }

                CiphertextBlob.Open(_cipher, header, tampered, context, new byte[header.PlaintextLength]);
            });
            Assert.Equal(KmsErrors.Codes.InvalidCiphertext, e.Code);
        }
    }

    [Fact]
    public void A_different_encryption_context_fails_and_names_the_key()
    {
        var blob = CiphertextBlob.Seal(_cipher, KeyId, VersionId, EncryptionContext.Parse("{\"db\":\"a\"}"), new byte[8]);
        var header = CiphertextBlob.ReadHeader(blob);

        var e = KmsFixture.Fails(KmsErrors.Codes.InvalidCiphertext,
            () => CiphertextBlob.Open(_cipher, header, blob, EncryptionContext.Parse("{\"db\":\"b\"}"), new byte[8]));
        Assert.Contains(KeyId, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("")]
    [InlineData("54")]
    [InlineData("544b4d53")]
    [InlineData("544b4d5302020101")]
    [InlineData("00000000000000000000000000000000000000000000000000000000000000000000")]
    public void Malformed_blobs_are_InvalidCiphertext(string hex)
    {
        KmsFixture.Fails(KmsErrors.Codes.InvalidCiphertext, () => CiphertextBlob.ReadHeader(Convert.FromHexString(hex)));
    }

    [Fact]
    public void Truncated_blobs_are_InvalidCiphertext()
    {
        var blob = CiphertextBlob.Seal(_cipher, KeyId, VersionId, EncryptionContext.Empty, new byte[32]);
        for (var length = 0; length < blob.Length - 32; length++)
        {
            var prefix = blob[..length];
            KmsFixture.Fails(KmsErrors.Codes.InvalidCiphertext, () => CiphertextBlob.ReadHeader(prefix));
        }
    }

    [Fact]
    public void Two_seals_of_the_same_plaintext_differ()
    {
        var a = CiphertextBlob.Seal(_cipher, KeyId, VersionId, EncryptionContext.Empty, new byte[32]);
        var b = CiphertextBlob.Seal(_cipher, KeyId, VersionId, EncryptionContext.Empty, new byte[32]);

        Assert.NotEqual(a, b);
    }
}
