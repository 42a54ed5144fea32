using System.Buffers.Text;
using System.Text.Json;
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
        var plaintext = ReadDataKey(response.Body);
        try
        {
            var keyId = ReadString(response.Body, "KeyId"u8);
            var wrapped = Convert.FromBase64String(ReadString(response.Body, "CiphertextBlob"u8));
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
        return ReadDataKey(response.Body);
    }

    private static void ThrowIfFailed(KmsApiResponse response)
    {
        if (!response.IsSuccess)
        {
            throw new KmsException(response.ErrorCode!, response.HttpStatus, response.ErrorMessage ?? response.ErrorCode!);
        }
    }

    // The Base64 "Plaintext" member, decoded from the UTF-8 body into secret memory.
    private static SecretBuffer ReadDataKey(ReadOnlySpan<byte> body)
    {
        var reader = new Utf8JsonReader(body);
        while (reader.Read())
        {
            if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == 1 && reader.ValueTextEquals("Plaintext"u8)
                && reader.Read() && reader.TokenType == JsonTokenType.String && !reader.ValueIsEscaped && !reader.HasValueSequence)
            {
                var encoded = reader.ValueSpan;
                var key = new SecretBuffer(Base64.GetMaxDecodedFromUtf8Length(encoded.Length));
                if (Base64.DecodeFromUtf8(encoded, key.Span, out _, out var written) != System.Buffers.OperationStatus.Done || written != 32)
                {
                    key.Dispose();
                    break;
                }

                var exact = SecretBuffer.CopyFrom(key.Span[..written]);
                key.Dispose();
                return exact;
            }
        }

        throw new KmsException(KmsErrors.Codes.InternalFailure, 500, "The KMS answer carried no 32-byte data key.");
    }

    private static string ReadString(ReadOnlySpan<byte> body, ReadOnlySpan<byte> name)
    {
        var reader = new Utf8JsonReader(body);
        while (reader.Read())
        {
            if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == 1 && reader.ValueTextEquals(name)
                && reader.Read() && reader.TokenType == JsonTokenType.String)
            {
                return reader.GetString()!;
            }
        }

        throw new KmsException(KmsErrors.Codes.InternalFailure, 500, $"The KMS answer has no {System.Text.Encoding.UTF8.GetString(name)}.");
    }
}
