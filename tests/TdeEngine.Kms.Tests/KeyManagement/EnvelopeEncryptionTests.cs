using System.Security.Cryptography;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.Tests.Infrastructure;
using C = TdeEngine.Kms.Errors.KmsErrors.Codes;

namespace TdeEngine.Kms.Tests.KeyManagement;

public sealed class EnvelopeEncryptionTests : IDisposable
{
    private static readonly EncryptionContext Orders = EncryptionContext.Parse("{\"db\":\"orders\"}");
    private readonly KmsFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public void GenerateDataKey_then_Decrypt_gives_back_the_same_key()
    {
        var id = _f.NewKey();

        using var dataKey = _f.Kms.GenerateDataKey(_f.Me, id, 32, Orders);
        using var opened = _f.Kms.Decrypt(_f.Me, dataKey.CiphertextBlob!, Orders);

        Assert.Equal(32, dataKey.Plaintext.Length);
        Assert.Equal(dataKey.Plaintext.Span.ToArray(), opened.Plaintext.Span.ToArray());
        Assert.Equal(id, opened.KeyId);
        Assert.Equal(_f.Kms.DescribeKey(_f.Me, id).PrimaryKeyVersion, opened.KeyVersionId);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(16)]
    [InlineData(1024)]
    public void Data_keys_have_the_requested_length(int bytes)
    {
        var id = _f.NewKey();

        using var dataKey = _f.Kms.GenerateDataKey(_f.Me, id, bytes);
        using var opened = _f.Kms.Decrypt(_f.Me, dataKey.CiphertextBlob!);

        Assert.Equal(bytes, opened.Plaintext.Length);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1025)]
    public void Data_key_length_outside_1_to_1024_is_refused(int bytes)
    {
        var id = _f.NewKey();

        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.GenerateDataKey(_f.Me, id, bytes).Dispose());
    }

    [Fact]
    public void Data_keys_are_random()
    {
        var id = _f.NewKey();
        using var a = _f.Kms.GenerateDataKey(_f.Me, id);
        using var b = _f.Kms.GenerateDataKey(_f.Me, id);

        Assert.NotEqual(a.Plaintext.Span.ToArray(), b.Plaintext.Span.ToArray());
    }

    [Fact]
    public void A_wrong_or_missing_encryption_context_fails()
    {
        var id = _f.NewKey();
        using var dataKey = _f.Kms.GenerateDataKey(_f.Me, id, 32, Orders);

        KmsFixture.Fails(C.InvalidCiphertext, () => _f.Kms.Decrypt(_f.Me, dataKey.CiphertextBlob!, EncryptionContext.Parse("{\"db\":\"payroll\"}")).Dispose());
        KmsFixture.Fails(C.InvalidCiphertext, () => _f.Kms.Decrypt(_f.Me, dataKey.CiphertextBlob!).Dispose());
        KmsFixture.Fails(C.InvalidCiphertext,
            () => _f.Kms.Decrypt(_f.Me, dataKey.CiphertextBlob!, EncryptionContext.Parse("{\"db\":\"orders\",\"x\":\"y\"}")).Dispose());
    }

    [Fact]
    public void The_order_of_encryption_context_members_does_not_matter()
    {
        var id = _f.NewKey();
        var blob = _f.Kms.Encrypt(_f.Me, id, "x"u8, EncryptionContext.Parse("{\"a\":\"1\",\"b\":\"2\"}")).CiphertextBlob;

        using var opened = _f.Kms.Decrypt(_f.Me, blob, EncryptionContext.Parse("{\"b\":\"2\",\"a\":\"1\"}"));

        Assert.Equal("x"u8.ToArray(), opened.Plaintext.Span.ToArray());
    }

    [Fact]
    public void A_disabled_key_refuses_Decrypt_GenerateDataKey_Encrypt_and_ReEncrypt()
    {
        var id = _f.NewKey();
        var other = _f.NewKey();
        var blob = _f.Kms.Encrypt(_f.Me, id, "x"u8).CiphertextBlob;

        _f.Kms.DisableKey(_f.Me, id);

        KmsFixture.Fails(C.Disabled, () => _f.Kms.Decrypt(_f.Me, blob).Dispose());
        KmsFixture.Fails(C.Disabled, () => _f.Kms.GenerateDataKey(_f.Me, id).Dispose());
        KmsFixture.Fails(C.Disabled, () => _f.Kms.GenerateDataKeyWithoutPlaintext(_f.Me, id));
        KmsFixture.Fails(C.Disabled, () => _f.Kms.Encrypt(_f.Me, id, "x"u8));
        KmsFixture.Fails(C.Disabled, () => _f.Kms.ReEncrypt(_f.Me, blob, other));
        KmsFixture.Fails(C.Disabled, () => _f.Kms.ReEncrypt(_f.Me, _f.Kms.Encrypt(_f.Me, other, "y"u8).CiphertextBlob, id));
    }

    [Fact]
    public void Encrypt_takes_1_byte_to_6_KiB()
    {
        var id = _f.NewKey();
        var max = RandomNumberGenerator.GetBytes(6 * 1024);

        using var opened = _f.Kms.Decrypt(_f.Me, _f.Kms.Encrypt(_f.Me, id, max).CiphertextBlob);

        Assert.Equal(max, opened.Plaintext.Span.ToArray());
        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.Encrypt(_f.Me, id, new byte[6 * 1024 + 1]));
        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.Encrypt(_f.Me, id, []));
    }

    [Fact]
    public void GenerateDataKeyWithoutPlaintext_gives_a_blob_that_decrypts_to_a_key()
    {
        var id = _f.NewKey();

        var result = _f.Kms.GenerateDataKeyWithoutPlaintext(_f.Me, id, 16, Orders);
        using var opened = _f.Kms.Decrypt(_f.Me, result.CiphertextBlob, Orders);

        Assert.Equal(16, opened.Plaintext.Length);
    }

    [Fact]
    public void ReEncrypt_moves_a_blob_to_another_key_and_context_without_changing_the_plaintext()
    {
        var source = _f.NewKey();
        var destination = _f.NewKey();
        using var dataKey = _f.Kms.GenerateDataKey(_f.Me, source, 32, Orders);
        var newContext = EncryptionContext.Parse("{\"db\":\"orders-v2\"}");

        var moved = _f.Kms.ReEncrypt(_f.Me, dataKey.CiphertextBlob!, destination, Orders, newContext);
        using var opened = _f.Kms.Decrypt(_f.Me, moved.CiphertextBlob, newContext);

        Assert.Equal(destination, moved.KeyId);
        Assert.Equal(destination, opened.KeyId);
        Assert.Equal(dataKey.Plaintext.Span.ToArray(), opened.Plaintext.Span.ToArray());
        KmsFixture.Fails(C.InvalidCiphertext, () => _f.Kms.ReEncrypt(_f.Me, dataKey.CiphertextBlob!, destination, newContext, newContext));
    }

    [Fact]
    public void A_blob_of_another_account_is_not_found()
    {
        var id = _f.NewKey();
        var blob = _f.Kms.Encrypt(_f.Me, id, "x"u8).CiphertextBlob;

        KmsFixture.Fails(C.KeyNotFound, () => _f.Kms.Decrypt(_f.Stranger, blob).Dispose());
    }

    [Fact]
    public void A_blob_naming_an_unknown_version_is_InvalidCiphertext()
    {
        var id = _f.NewKey();
        var blob = _f.Kms.Encrypt(_f.Me, id, "x"u8).CiphertextBlob;
        var version = _f.Kms.DescribeKey(_f.Me, id).PrimaryKeyVersion!;
        var offset = blob.AsSpan().IndexOf(System.Text.Encoding.ASCII.GetBytes(version));
        blob[offset] = (byte)(blob[offset] == (byte)'a' ? 'b' : 'a');

        KmsFixture.Fails(C.InvalidCiphertext, () => _f.Kms.Decrypt(_f.Me, blob).Dispose());
    }

    [Fact]
    public void Disposing_a_plaintext_result_wipes_and_releases_it()
    {
        var id = _f.NewKey();
        var dataKey = _f.Kms.GenerateDataKey(_f.Me, id);

        dataKey.Dispose();

        Assert.True(dataKey.Plaintext.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => dataKey.Plaintext.Span.Length);
    }

    [Fact]
    public void Concurrent_data_key_calls_from_many_threads_all_round_trip()
    {
        var id = _f.NewKey();
        var failures = 0;

        Parallel.For(0, 2000, new ParallelOptions { MaxDegreeOfParallelism = 8 }, _ =>
        {
            using var dataKey = _f.Kms.GenerateDataKey(_f.Me, id, 32, Orders);
            using var opened = _f.Kms.Decrypt(_f.Me, dataKey.CiphertextBlob!, Orders);
            if (!dataKey.Plaintext.Span.SequenceEqual(opened.Plaintext.Span))
            {
                Interlocked.Increment(ref failures);
            }
        });

        Assert.Equal(0, failures);
    }
}
