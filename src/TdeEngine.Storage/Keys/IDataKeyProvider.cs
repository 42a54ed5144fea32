using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Storage.Keys;

/// <summary>A new DEK: in plaintext (owned by the caller) and wrapped by a KMS key.</summary>
public sealed class NewDataKey(string kmsKeyArn, byte[] wrapped, SecretBuffer plaintext) : IDisposable
{
    /// <summary>The ARN of the KMS key that wraps the DEK.</summary>
    public string KmsKeyArn { get; } = kmsKeyArn;

    /// <summary>The KMS CiphertextBlob of the DEK.</summary>
    public byte[] Wrapped { get; } = wrapped;

    /// <summary>The DEK. Wiped on dispose.</summary>
    public SecretBuffer Plaintext { get; } = plaintext;

    public void Dispose() => Plaintext.Dispose();
}

/// <summary>A DEK wrapped again by <see cref="IDataKeyProvider.ReEncrypt"/>: the wrapping key's ARN and the new CiphertextBlob.</summary>
public sealed record RewrappedDataKey(string KmsKeyArn, byte[] Wrapped);

/// <summary>
/// Where the storage engine gets and unwraps DEKs: the embedded KMS, or (later) a remote KMS
/// server. Errors are <c>KmsException</c>s (refusals) or other exceptions (KMS unreachable).
/// </summary>
public interface IDataKeyProvider
{
    /// <summary>GenerateDataKey: a 32-byte DEK under <paramref name="kmsKeyId"/>.</summary>
    NewDataKey GenerateDataKey(string kmsKeyId, EncryptionContext context);

    /// <summary>Decrypt: unwraps a DEK. The caller owns and disposes the result.</summary>
    SecretBuffer Decrypt(byte[] wrapped, EncryptionContext context);

    /// <summary>
    /// ReEncrypt: the same DEK wrapped under the current version of <paramref name="destinationKeyId"/>
    /// (the key that wraps it now, after a rotation, or another key), with the same context. The
    /// plaintext DEK never leaves the KMS. Providers written before re-wrapping existed refuse it.
    /// </summary>
    RewrappedDataKey ReEncrypt(byte[] wrapped, EncryptionContext context, string destinationKeyId) =>
        throw new NotSupportedException($"{GetType().Name} cannot re-wrap DEKs: it does not implement ReEncrypt.");
}
