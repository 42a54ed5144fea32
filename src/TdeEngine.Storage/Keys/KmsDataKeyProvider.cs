using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Storage.Keys;

/// <summary>DEKs from an in-process <see cref="KeyManagementService"/>, called as the given identity.</summary>
public sealed class KmsDataKeyProvider(KeyManagementService kms, Func<KmsCallContext> caller) : IDataKeyProvider
{
    /// <summary>Calls as the root of the KMS's default account (the embedded default).</summary>
    public KmsDataKeyProvider(KeyManagementService kms)
        : this(kms, () => KmsCallContext.ForRoot(kms.Options.DefaultAccountId, userAgent: "tde-storage"))
    {
    }

    public NewDataKey GenerateDataKey(string kmsKeyId, EncryptionContext context)
    {
        var ctx = caller();
        var result = kms.GenerateDataKey(ctx, kmsKeyId, 32, context);
        try
        {
            var arn = kms.DescribeKey(ctx, result.KeyId).Arn;
            var plaintext = SecretBuffer.CopyFrom(result.Plaintext.Span);
            return new NewDataKey(arn, result.CiphertextBlob!, plaintext);
        }
        finally
        {
            result.Dispose();
        }
    }

    public SecretBuffer Decrypt(byte[] wrapped, EncryptionContext context)
    {
        using var result = kms.Decrypt(caller(), wrapped, context);
        return SecretBuffer.CopyFrom(result.Plaintext.Span);
    }

    public RewrappedDataKey ReEncrypt(byte[] wrapped, EncryptionContext context, string destinationKeyId)
    {
        var ctx = caller();
        var result = kms.ReEncrypt(ctx, wrapped, destinationKeyId, context, context);
        return new RewrappedDataKey(kms.DescribeKey(ctx, result.KeyId).Arn, result.CiphertextBlob);
    }
}
