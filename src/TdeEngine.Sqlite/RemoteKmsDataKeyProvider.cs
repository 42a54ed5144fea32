using System.Security.Cryptography;
using System.Net;
using System.Text;
using System.Text.Json;
using TdeEngine.Kms.Api;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Secrets;
using TdeEngine.Storage.Keys;

namespace TdeEngine.Sqlite;

/// <summary>
/// DEKs from a KMS server (<c>tde kms serve</c>, or anything that speaks the Alibaba Cloud KMS RPC
/// API 2016-01-20): signed GenerateDataKey, DescribeKey and Decrypt requests with an access key
/// (and the security token of an STS session). The server authorizes and audits them as that key's
/// principal. Refusals are <see cref="KmsException"/>s with the server's code; a server that cannot
/// be reached is an <see cref="HttpRequestException"/>, which the VFS reports as <c>Tde.KmsUnreachable</c>.
/// </summary>
/// <remarks>
/// The VFS calls synchronously, so requests use <see cref="HttpClient.Send(HttpRequestMessage)"/>.
/// The answer bodies that carry a data key are wiped once read; the key goes straight from the
/// Base64 text into a <see cref="SecretBuffer"/>.
/// </remarks>
public sealed class RemoteKmsDataKeyProvider : IDataKeyProvider, IDisposable
{
    private readonly HttpClient _http;
    private readonly string _accessKeyId;
    private readonly SecretBuffer _secret;
    private readonly string? _securityToken;

    /// <param name="endpoint">The server, for example <c>http://127.0.0.1:8443/</c>.</param>
    /// <param name="accessKeyId">The access key to sign with (<c>LTAI…</c>, or <c>STS.…</c> with <paramref name="securityToken"/>).</param>
    /// <param name="accessKeySecret">Its secret (ASCII); copied into memory this object owns and wipes on dispose.</param>
    /// <param name="securityToken">The SecurityToken of an STS session, when the key is temporary.</param>
    /// <param name="handler">An HTTP handler (TLS settings, proxies); the default one otherwise.</param>
    public RemoteKmsDataKeyProvider(Uri endpoint, string accessKeyId, ReadOnlySpan<byte> accessKeySecret, string? securityToken = null,
        HttpMessageHandler? handler = null)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        ArgumentException.ThrowIfNullOrEmpty(accessKeyId);
        _http = handler is null ? new HttpClient() : new HttpClient(handler);
        _http.BaseAddress = endpoint;
        _http.Timeout = TimeSpan.FromSeconds(30);
        _accessKeyId = accessKeyId;
        _secret = SecretBuffer.CopyFrom(accessKeySecret);
        _securityToken = securityToken;
    }

    public NewDataKey GenerateDataKey(string kmsKeyId, EncryptionContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var answer = Call("GenerateDataKey", new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["KeyId"] = kmsKeyId, ["NumberOfBytes"] = "32", ["EncryptionContext"] = context.ToString(),
        });
        try
        {
            var plaintext = DataKeyJson.ReadDataKey(answer);
            try
            {
                var keyId = DataKeyJson.ReadString(answer, "KeyId"u8);
                var wrapped = DataKeyJson.ReadBase64(answer, "CiphertextBlob"u8);
                var arn = DataKeyJson.ReadString(Call("DescribeKey", new Dictionary<string, string>(StringComparer.Ordinal) { ["KeyId"] = keyId }), "Arn"u8, depth: 2);
                return new NewDataKey(arn, wrapped, plaintext);
            }
            catch
            {
                plaintext.Dispose();
                throw;
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(answer);
        }
    }

    public SecretBuffer Decrypt(byte[] wrapped, EncryptionContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var answer = Call("Decrypt", new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["CiphertextBlob"] = Convert.ToBase64String(wrapped), ["EncryptionContext"] = context.ToString(),
        });
        try
        {
            return DataKeyJson.ReadDataKey(answer);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(answer);
        }
    }

    public RewrappedDataKey ReEncrypt(byte[] wrapped, EncryptionContext context, string destinationKeyId)
    {
        ArgumentNullException.ThrowIfNull(context);
        var answer = Call("ReEncrypt", new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["CiphertextBlob"] = Convert.ToBase64String(wrapped), ["DestinationKeyId"] = destinationKeyId,
            ["SourceEncryptionContext"] = context.ToString(), ["DestinationEncryptionContext"] = context.ToString(),
        });
        var keyId = DataKeyJson.ReadString(answer, "KeyId"u8);
        var arn = DataKeyJson.ReadString(Call("DescribeKey", new Dictionary<string, string>(StringComparer.Ordinal) { ["KeyId"] = keyId }), "Arn"u8, depth: 2);
        return new RewrappedDataKey(arn, DataKeyJson.ReadBase64(answer, "CiphertextBlob"u8));
    }

    public void Dispose()
    {
        _http.Dispose();
        _secret.Dispose();
    }

    // One signed POST; the answer body on success, a KmsException with the server's code otherwise.
    private byte[] Call(string action, Dictionary<string, string> parameters)
    {
        RpcSignature.SignRequest(parameters, action, "2016-01-20", _accessKeyId, _secret.Span, _securityToken);
        var form = string.Join('&', parameters.Select(p => RpcSignature.Encode(p.Key) + "=" + RpcSignature.Encode(p.Value)));
        using var request = new HttpRequestMessage(HttpMethod.Post, "/") { Content = new StringContent(form, Encoding.ASCII, "application/x-www-form-urlencoded") };
        // Headers only: HttpClient would otherwise buffer the body in pooled arrays that it returns
        // to ArrayPool<byte>.Shared without clearing them, Base64 data key included. The timeout then
        // covers the body as well: a server that stalls mid-answer has the response disposed under it.
        using var deadline = new CancellationTokenSource(_http.Timeout);
        HttpResponseMessage response;
        try
        {
            response = _http.Send(request, HttpCompletionOption.ResponseHeadersRead, deadline.Token);
        }
        catch (OperationCanceledException e)
        {
            throw TimedOut(action, e);
        }

        using (response)
        using (deadline.Token.Register(static r => ((HttpResponseMessage)r!).Dispose(), response))
        {
            byte[] bytes;
            try
            {
                using var stream = response.Content.ReadAsStream();
                bytes = ReadBody(stream);
            }
            catch (Exception e) when (deadline.IsCancellationRequested && e is IOException or ObjectDisposedException or OperationCanceledException)
            {
                throw TimedOut(action, e);
            }
            catch (IOException e)
            {
                // The connection broke off mid-answer: a server that cannot be reached, as HttpClient
                // reported it when it read the body itself.
                throw new HttpRequestException($"The KMS server at {_http.BaseAddress} broke off its answer to {action}: {e.Message}", e);
            }

            if (response.StatusCode == HttpStatusCode.OK)
            {
                return bytes;
            }

            var (code, message) = Error(bytes);
            throw new KmsException(code, (int)response.StatusCode, message);
        }
    }

    /// <summary>How long one call may take, answer body included. Default 30 seconds.</summary>
    internal TimeSpan Timeout
    {
        get => _http.Timeout;
        set => _http.Timeout = value;
    }

    private HttpRequestException TimedOut(string action, Exception inner) =>
        new($"The KMS server at {_http.BaseAddress} did not answer {action} within {_http.Timeout.TotalSeconds:0.#} s.", inner);

    // A KMS answer is a few hundred bytes; a body past this is not one.
    private const int MaxAnswerBytes = 1 << 20;

    // The whole body, gathered in arrays that are wiped as they are outgrown and when done.
    private static byte[] ReadBody(Stream stream)
    {
        using var body = new SecretBufferWriter(4096);
        int read;
        while ((read = stream.Read(body.GetSpan(1))) > 0)
        {
            body.Advance(read);
            if (body.WrittenSpan.Length > MaxAnswerBytes)
            {
                throw new KmsException(KmsErrors.Codes.InternalFailure, 502,
                    $"The KMS endpoint's answer is larger than {MaxAnswerBytes >> 20} MiB, which no KMS answer is: check that the endpoint is a TdeEngine or Alibaba Cloud KMS server.");
            }
        }

        return body.WrittenSpan.ToArray();
    }


    private static (string Code, string Message) Error(byte[] body)
    {
        try
        {
            using var json = JsonDocument.Parse(body);
            var root = json.RootElement;
            return (root.GetProperty("Code").GetString() ?? KmsErrors.Codes.InternalFailure, root.TryGetProperty("Message", out var m) ? m.GetString() ?? "" : "");
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return (KmsErrors.Codes.InternalFailure, "The KMS server answered with an error that is not in the Alibaba error shape.");
        }
    }
}
