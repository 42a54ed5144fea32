using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;
using TdeEngine.Kms.Api;

namespace TdeEngine.Server;

/// <summary>
/// Reads a request in either of the two signature schemes Alibaba's SDKs use:
/// <list type="bullet">
/// <item><b>RPC signature 1.0</b> (HMAC-SHA1; <c>@alicloud/pop-core</c>, the older generated SDKs):
/// <c>Action</c>, <c>Version</c>, <c>AccessKeyId</c>, <c>Timestamp</c>, <c>SignatureNonce</c> and
/// <c>Signature</c> are parameters in the query or a form body.</item>
/// <item><b>V3</b> (<c>ACS3-HMAC-SHA256</c>; the Tea <c>openapi-client</c> of the current SDKs, by
/// default): an <c>Authorization</c> header, the action and version in <c>x-acs-action</c> /
/// <c>x-acs-version</c>, the time and nonce in <c>x-acs-date</c> / <c>x-acs-signature-nonce</c>, the
/// body's SHA-256 in <c>x-acs-content-sha256</c>, and the action's parameters in the query or a form
/// body (<see cref="Acs3Signature"/>).</item>
/// </list>
/// </summary>
internal static class SignedRequestReader
{
    private static readonly HashSet<string> CommonParameters = new(StringComparer.Ordinal)
    {
        "Action", "Format", "Version", "AccessKeyId", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp", "Signature",
        "RegionId", "SecurityToken", "SignatureType",
    };

    // Map parameters that may arrive flattened (Name.key=value) rather than as a JSON object.
    private static readonly HashSet<string> ContextParameters = new(StringComparer.Ordinal)
    {
        "EncryptionContext", "SourceEncryptionContext", "DestinationEncryptionContext",
    };

    private static readonly string[] RequiredParameters =
        ["Action", "Version", "AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp"];

    /// <summary>Reads and checks the form of a request; throws <see cref="RequestRefusal"/> when it is not one.</summary>
    public static async Task<SignedRequest> ReadAsync(HttpRequest request)
    {
        try
        {
            return IsV3(request) ? await ReadV3Async(request).ConfigureAwait(false) : await ReadRpcAsync(request).ConfigureAwait(false);
        }
        catch (Exception e) when (e is BadHttpRequestException or InvalidDataException or IOException or FormatException)
        {
            var status = e is BadHttpRequestException bad ? bad.StatusCode : 400;
            throw new RequestRefusal(status, "InvalidParameter", "The request could not be read: " + e.Message);
        }
    }

    // The parameters of the action itself: everything but the common (signature) parameters, with an
    // encryption context sent flattened folded back into its JSON form.
    private static Dictionary<string, string> ActionParameters(IReadOnlyDictionary<string, string> parameters)
    {
        var action = new Dictionary<string, string>(StringComparer.Ordinal);
        Dictionary<string, SortedDictionary<string, string>>? flattened = null;
        foreach (var (name, value) in parameters)
        {
            if (CommonParameters.Contains(name))
            {
                continue;
            }

            var dot = name.IndexOf('.', StringComparison.Ordinal);
            if (dot > 0 && dot < name.Length - 1 && ContextParameters.Contains(name[..dot]))
            {
                flattened ??= new(StringComparer.Ordinal);
                var context = flattened.TryGetValue(name[..dot], out var found) ? found : flattened[name[..dot]] = new(StringComparer.Ordinal);
                context[name[(dot + 1)..]] = value;
            }
            else
            {
                action[name] = value;
            }
        }

        foreach (var (name, context) in flattened ?? [])
        {
            // The typed SDKs of the RPC generation send a map as Name.key=value (@alicloud/kms20160120 1.x:
            // EncryptionContext.db=orders); Alibaba's gateway reads it as the map. Given both ways, it is ambiguous.
            if (action.ContainsKey(name))
            {
                throw new RequestRefusal(400, "InvalidParameter", $"The parameter '{name}' is given both as JSON and as {name}.<key> values; send one form.");
            }

            action[name] = JsonSerializer.Serialize(context);
        }

        return action;
    }

    private static bool IsV3(HttpRequest request) =>
        request.Headers.Authorization is [{ } authorization] && authorization.StartsWith("ACS3-", StringComparison.Ordinal);

    private static async Task<SignedRequest> ReadRpcAsync(HttpRequest request)
    {
        var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, values) in request.Query)
        {
            parameters[name] = values.ToString();
        }

        if (request.HasFormContentType)
        {
            var form = await request.ReadFormAsync().ConfigureAwait(false);
            foreach (var (name, values) in form)
            {
                parameters[name] = values.ToString();
            }
        }

        foreach (var required in RequiredParameters)
        {
            if (!parameters.TryGetValue(required, out var value) || value.Length == 0)
            {
                throw new RequestRefusal(400, "MissingParameter", $"The input parameter '{required}' that is mandatory for processing this request is not supplied.");
            }
        }

        if (parameters["SignatureMethod"] != "HMAC-SHA1" || parameters["SignatureVersion"] != "1.0")
        {
            throw new RequestRefusal(400, "InvalidParameter",
                "Only SignatureMethod HMAC-SHA1 with SignatureVersion 1.0 is supported (or the V3 signature, ACS3-HMAC-SHA256, in an Authorization header).");
        }

        var method = request.Method;
        return new SignedRequest
        {
            Action = parameters["Action"],
            Version = parameters["Version"],
            AccessKeyId = parameters["AccessKeyId"],
            SecurityToken = parameters.GetValueOrDefault("SecurityToken"),
            Timestamp = parameters["Timestamp"],
            Nonce = parameters["SignatureNonce"],
            Parameters = ActionParameters(parameters),
            CheckSignature = secret => RpcSignature.Verify(method, parameters, secret, parameters["Signature"])
                ? null
                : "The signature does not match: check the AccessKeySecret and sign the parameters exactly as sent (RPC signature 1.0).",
        };
    }

    private static async Task<SignedRequest> ReadV3Async(HttpRequest request)
    {
        var authorization = Acs3Signature.ParseAuthorization(request.Headers.Authorization.ToString(), out var problem)
            ?? throw new RequestRefusal(400, "IncompleteSignature", "The V3 signature is malformed: " + problem);
        foreach (var required in Acs3Signature.RequiredHeaders)
        {
            if (StringValues.IsNullOrEmpty(request.Headers[required]))
            {
                throw new RequestRefusal(400, "MissingParameter", $"The header '{required}' that a V3 signed request must carry is not supplied.");
            }
        }

        // Everything the server acts on must be signed: host, every x-acs-* header, and the content type
        // (it decides whether the body is read as parameters).
        var signed = new HashSet<string>(authorization.SignedHeaders, StringComparer.Ordinal);
        foreach (var (name, values) in request.Headers)
        {
            var lower = name.ToLowerInvariant();
            if ((lower == "host" || lower == "content-type" || lower.StartsWith("x-acs-", StringComparison.Ordinal)) && !signed.Contains(lower))
            {
                throw new RequestRefusal(400, "IncompleteSignature", $"The header '{lower}' is not in SignedHeaders: a V3 request must sign host, content-type and every x-acs-* header it carries.");
            }

            // A signed header's values are sorted in the canonical request, but read joined in the
            // order sent: two lines would verify in either order and be read as two different values
            // (a nonce "a,b", then "b,a": a replay the replay guard takes for a fresh request).
            if (values.Count > 1 && signed.Contains(lower))
            {
                throw new RequestRefusal(400, "InvalidParameter", $"The header '{lower}' is given more than once; a V3 request carries each signed header once.");
            }
        }

        var body = await ReadBodyAsync(request).ConfigureAwait(false);
        try
        {
            var hashed = Acs3Signature.HashHex(body);
            var parameters = new Dictionary<string, string>(StringComparer.Ordinal);
            var query = new List<KeyValuePair<string, string>>();
            foreach (var (name, values) in request.Query)
            {
                // The canonical query sorts a repeated name's values, so their order (which the joined
                // value below keeps) is not signed: "a=2&a=1" verifies as "a=1&a=2".
                if (values.Count > 1)
                {
                    throw new RequestRefusal(400, "InvalidParameter", $"The query parameter '{name}' is given more than once; a V3 request gives each parameter once.");
                }

                parameters[name] = values.ToString();
                foreach (var value in values)
                {
                    query.Add(new(name, value ?? ""));
                }
            }

            if (body.Length > 0)
            {
                // Only a url-encoded form: HasFormContentType also admits multipart/form-data, which
                // the url-encoded reader below would misread (text in a part's value read as parameters).
                if (!request.HasFormContentType || !MediaTypeHeaderValue.TryParse(request.ContentType, out var media) ||
                    !media.MediaType.Equals("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase))
                {
                    throw new RequestRefusal(400, "InvalidParameter", "The body of an RPC request must be a form (application/x-www-form-urlencoded).");
                }

                using var form = new FormReader(Encoding.UTF8.GetString(body));
                foreach (var (name, values) in form.ReadForm())
                {
                    parameters[name] = values.ToString();
                }
            }

            var declaredHash = request.Headers["x-acs-content-sha256"].ToString();
            var canonical = Acs3Signature.CanonicalRequest(request.Method, "/", query, authorization.SignedHeaders,
                name => request.Headers[name].Select(v => v ?? ""), declaredHash);
            return new SignedRequest
            {
                Action = request.Headers["x-acs-action"].ToString(),
                Version = request.Headers["x-acs-version"].ToString(),
                AccessKeyId = authorization.AccessKeyId,
                SecurityToken = request.Headers["x-acs-security-token"] is { Count: > 0 } token ? token.ToString() : null,
                Timestamp = request.Headers["x-acs-date"].ToString(),
                Nonce = request.Headers["x-acs-signature-nonce"].ToString(),
                Parameters = ActionParameters(parameters),
                CheckSignature = secret =>
                    !string.Equals(declaredHash, hashed, StringComparison.OrdinalIgnoreCase)
                        ? "x-acs-content-sha256 is not the SHA-256 of the request body: the body was changed, or hashed other than as sent."
                        : Acs3Signature.Verify(canonical, secret, authorization.Signature)
                            ? null
                            : "The signature does not match: check the AccessKeySecret and sign the canonical request exactly as sent (V3 signature, ACS3-HMAC-SHA256).",
            };
        }
        finally
        {
            // The body may hold plaintext to encrypt.
            CryptographicOperations.ZeroMemory(body);
        }
    }

    // The whole body, gathered in arrays that are wiped as they are outgrown (it may hold plaintext to
    // encrypt); Kestrel enforces the server's MaxRequestBodySize while it is read.
    private static async Task<byte[]> ReadBodyAsync(HttpRequest request)
    {
        using var body = new SecretBufferWriter(request.ContentLength is { } length and > 0 and <= int.MaxValue ? (int)length : 4096);
        int read;
        while ((read = await request.Body.ReadAsync(body.GetMemory(1)).ConfigureAwait(false)) > 0)
        {
            body.Advance(read);
        }

        return body.WrittenSpan.ToArray();
    }
}
