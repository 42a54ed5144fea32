using System.Buffers.Text;
using System.Text.Json;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Sqlite;

/// <summary>Reads KMS answers (GenerateDataKey, Decrypt, DescribeKey) without turning the data key into a string.</summary>
internal static class DataKeyJson
{
    // The Base64 "Plaintext" member, decoded from the UTF-8 body into secret memory.
    public static SecretBuffer ReadDataKey(ReadOnlySpan<byte> body)
    {
        var reader = new Utf8JsonReader(body);
        while (Read(ref reader))
        {
            if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == 1 && reader.ValueTextEquals("Plaintext"u8)
                && Read(ref reader) && reader.TokenType == JsonTokenType.String && !reader.ValueIsEscaped && !reader.HasValueSequence)
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

    public static string ReadString(ReadOnlySpan<byte> body, ReadOnlySpan<byte> name, int depth = 1)
    {
        var reader = new Utf8JsonReader(body);
        while (Read(ref reader))
        {
            if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == depth && reader.ValueTextEquals(name)
                && Read(ref reader) && reader.TokenType == JsonTokenType.String)
            {
                try
                {
                    return reader.GetString()!;
                }
                catch (InvalidOperationException)
                {
                    // An unpaired surrogate escape or invalid UTF-8: not an answer a KMS gives.
                    throw new KmsException(KmsErrors.Codes.InternalFailure, 500,
                        $"The KMS answer's {System.Text.Encoding.UTF8.GetString(name)} is not valid text.");
                }
            }
        }

        throw new KmsException(KmsErrors.Codes.InternalFailure, 500, $"The KMS answer has no {System.Text.Encoding.UTF8.GetString(name)}.");
    }

    // A Base64 member (CiphertextBlob) as bytes; text that is not Base64 is a KMS error like any other wrong answer.
    public static byte[] ReadBase64(ReadOnlySpan<byte> body, ReadOnlySpan<byte> name)
    {
        try
        {
            return Convert.FromBase64String(ReadString(body, name));
        }
        catch (FormatException)
        {
            throw new KmsException(KmsErrors.Codes.InternalFailure, 500, $"The KMS answer's {System.Text.Encoding.UTF8.GetString(name)} is not Base64.");
        }
    }

    // A body that is not JSON (an answer from something other than a KMS, or cut short) is a KMS
    // error like any other wrong answer, not a JsonException.
    private static bool Read(ref Utf8JsonReader reader)
    {
        try
        {
            return reader.Read();
        }
        catch (JsonException)
        {
            throw new KmsException(KmsErrors.Codes.InternalFailure, 500,
                "The KMS answer is not JSON: check that the endpoint is a KMS server (tde kms serve, or one that speaks the Alibaba KMS API).");
        }
    }
}
