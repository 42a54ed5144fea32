using System.Security.Cryptography;
using System.Text.Json;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;

namespace TdeEngine.Kms.Api;

/// <summary>
/// Builds an OpenAPI response the Alibaba way: the action's fields plus <c>RequestId</c> on success;
/// <c>{"Code","Message","RequestId"}</c> with the error's HTTP status otherwise. Shared by every
/// action surface (KMS, RAM, audit) so errors look alike everywhere.
/// </summary>
public static class ApiResponse
{
    /// <summary>
    /// Runs <paramref name="writeBody"/> into a wiped-on-dispose buffer. A <see cref="KmsException"/>
    /// becomes its code and status; anything else becomes <c>InternalFailure</c> without internal details.
    /// </summary>
    public static KmsApiResponse Execute(KmsCallContext context, bool indented, Action<Utf8JsonWriter> writeBody)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(writeBody);
        var options = new JsonWriterOptions { Indented = indented, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        var body = new SecretBufferWriter();
        try
        {
            using (var writer = new Utf8JsonWriter(body, options))
            {
                writer.WriteStartObject();
                writeBody(writer);
                writer.WriteString("RequestId", context.RequestId);
                writer.WriteEndObject();
            }

            return new KmsApiResponse(200, body, context.RequestId, null, null);
        }
        catch (Exception e)
        {
            body.Dispose();
            var error = e as KmsException ?? new KmsException(KmsErrors.Codes.InternalFailure, 500,
                e is CryptographicException ? e.Message : "The KMS failed internally. Retry; if it persists, check the server log for this RequestId.", e);
            return Error(context, error, options);
        }
    }

    /// <summary>An error response for <paramref name="error"/>.</summary>
    public static KmsApiResponse Error(KmsCallContext context, KmsException error, bool indented = false) =>
        Error(context, error, new JsonWriterOptions { Indented = indented, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    private static KmsApiResponse Error(KmsCallContext context, KmsException error, JsonWriterOptions options)
    {
        var errorBody = new SecretBufferWriter(256);
        using (var writer = new Utf8JsonWriter(errorBody, options))
        {
            writer.WriteStartObject();
            writer.WriteString("Code", error.Code);
            writer.WriteString("Message", error.Message);
            writer.WriteString("RequestId", context.RequestId);
            writer.WriteEndObject();
        }

        return new KmsApiResponse(error.HttpStatus, errorBody, context.RequestId, error.Code, error.Message);
    }
}
