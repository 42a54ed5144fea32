using TdeEngine.Gateway;
using TdeEngine.Kms.Api;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.Secrets;
using TdeEngine.Storage.Keys;

namespace TdeEngine.Sqlite;

/// <summary>
/// DEKs through the <see cref="KmsGateway"/>: every GenerateDataKey and Decrypt the storage engine
/// makes is authorized by RAM (as <paramref name="caller"/>) and recorded in the audit trail, like
/// any other KMS call. The data key is read from the response straight into a
/// <see cref="SecretBuffer"/>: it never becomes a string.
/// </summary>
public sealed class GatewayDataKeyProvider(KmsGateway gateway, Func<KmsCallContext> caller) : IDataKeyProvider
{
    public NewDataKey GenerateDataKey(string kmsKeyId, EncryptionContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = caller();
        using var response = gateway.InvokeKms(call, "GenerateDataKey", new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["KeyId"] = kmsKeyId,
            ["NumberOfBytes"] = "32",
            ["EncryptionContext"] = context.ToString(),
        });
        ThrowIfFailed(response);
        var plaintext = DataKeyJson.ReadDataKey(response.Body);
        try
        {
            var keyId = DataKeyJson.ReadString(response.Body, "KeyId"u8);
            var wrapped = Convert.FromBase64String(DataKeyJson.ReadString(response.Body, "CiphertextBlob"u8));
            return new NewDataKey(gateway.KeyArn(call, keyId), wrapped, plaintext);
        }
        catch
        {
            plaintext.Dispose();
            throw;
        }
    }

    public SecretBuffer Decrypt(byte[] wrapped, EncryptionContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        using var response = gateway.InvokeKms(caller(), "Decrypt", new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["CiphertextBlob"] = Convert.ToBase64String(wrapped),
            ["EncryptionContext"] = context.ToString(),
        });
        ThrowIfFailed(response);
        return DataKeyJson.ReadDataKey(response.Body);
    }

    public RewrappedDataKey ReEncrypt(byte[] wrapped, EncryptionContext context, string destinationKeyId)
    {
        ArgumentNullException.ThrowIfNull(context);
        var call = caller();
        using var response = gateway.InvokeKms(call, "ReEncrypt", new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["CiphertextBlob"] = Convert.ToBase64String(wrapped),
            ["DestinationKeyId"] = destinationKeyId,
            ["SourceEncryptionContext"] = context.ToString(),
            ["DestinationEncryptionContext"] = context.ToString(),
        });
        ThrowIfFailed(response);
        var keyId = DataKeyJson.ReadString(response.Body, "KeyId"u8);
        return new RewrappedDataKey(gateway.KeyArn(call, keyId), Convert.FromBase64String(DataKeyJson.ReadString(response.Body, "CiphertextBlob"u8)));
    }

    private static void ThrowIfFailed(KmsApiResponse response)
    {
        if (!response.IsSuccess)
        {
            throw new KmsException(response.ErrorCode!, response.HttpStatus, response.ErrorMessage ?? response.ErrorCode!);
        }
    }
}
