using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using TdeEngine.Kms.Identity;

namespace TdeEngine.Kms.Api;

/// <summary>
/// Alibaba Cloud request signature V3 (<c>ACS3-HMAC-SHA256</c>), the default of the current
/// official SDKs (the Tea <c>openapi-client</c> core in every language). The action and version
/// travel in <c>x-acs-action</c> / <c>x-acs-version</c> headers, the parameters in the query (and
/// optionally a form body), and the <c>Authorization</c> header signs:
/// <code>
/// CanonicalRequest = METHOD \n CanonicalURI \n CanonicalQueryString \n CanonicalHeaders \n SignedHeaders \n hex(SHA-256(body))
/// StringToSign     = "ACS3-HMAC-SHA256" \n hex(SHA-256(CanonicalRequest))
/// Signature        = hex(HMAC-SHA256(AccessKeySecret, StringToSign))
/// Authorization    = ACS3-HMAC-SHA256 Credential=AccessKeyId,SignedHeaders=host;x-acs-…,Signature=…
/// </code>
/// CanonicalQueryString: every name=value, each percent-encoded (RFC 3986), sorted by name then value,
/// joined with <c>&amp;</c>. CanonicalHeaders: each signed header (lower-case name, sorted) as
/// <c>name:value\n</c>, its values trimmed, sorted and joined with a comma.
/// </summary>
public static class Acs3Signature
{
    /// <summary>The one V3 algorithm the server accepts (not the SM3 or RSA variants).</summary>
    public const string Algorithm = "ACS3-HMAC-SHA256";

    /// <summary>The headers a V3 request must carry (and sign).</summary>
    public static IReadOnlyList<string> RequiredHeaders { get; } =
        ["host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"];

    /// <summary>Lower-case hex SHA-256, the form of <c>x-acs-content-sha256</c>.</summary>
    public static string HashHex(ReadOnlySpan<byte> data)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(data, hash);
        return Convert.ToHexStringLower(hash);
    }

    /// <summary>
    /// Parses <c>ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…</c>; null with a reason when
    /// the header is not of that form (the three fields, each once, none empty).
    /// </summary>
    public static Acs3Authorization? ParseAuthorization(string header, out string? problem)
    {
        ArgumentNullException.ThrowIfNull(header);
        problem = null;
        if (!header.StartsWith(Algorithm + " ", StringComparison.Ordinal))
        {
            problem = $"the Authorization header must start with '{Algorithm} ' (the SM3 and RSA variants are not supported).";
            return null;
        }

        string? credential = null, signedHeaders = null, signature = null;
        foreach (var part in header[(Algorithm.Length + 1)..].Split(','))
        {
            var field = part.Trim();
            var equals = field.IndexOf('=', StringComparison.Ordinal);
            var name = equals > 0 ? field[..equals] : field;
            var value = equals > 0 ? field[(equals + 1)..] : "";
            ref var slot = ref credential;
            switch (name)
            {
                case "Credential":
                    break;
                case "SignedHeaders":
                    slot = ref signedHeaders;
                    break;
                case "Signature":
                    slot = ref signature;
                    break;
                default:
                    problem = $"the Authorization header has an unknown field '{Truncate(name)}'; it takes Credential, SignedHeaders and Signature.";
                    return null;
            }

            if (slot is not null || value.Length == 0)
            {
                problem = slot is not null ? $"the Authorization header gives {name} twice." : $"the Authorization header's {name} is empty.";
                return null;
            }

            slot = value;
        }

        if (credential is null || signedHeaders is null || signature is null)
        {
            problem = $"the Authorization header lacks {(credential is null ? "Credential" : signedHeaders is null ? "SignedHeaders" : "Signature")}.";
            return null;
        }

        var names = signedHeaders.Split(';');
        if (names.Any(n => n.Length == 0 || n != n.ToLowerInvariant()))
        {
            problem = "SignedHeaders must list lower-case header names separated by ';'.";
            return null;
        }

        return new Acs3Authorization(credential, names, signature);
    }

    /// <summary>
    /// The canonical request. <paramref name="query"/> holds the decoded query parameters (a name may
    /// repeat); <paramref name="headerValues"/> gives the values a request carries for a lower-case
    /// header name (none when absent).
    /// </summary>
    public static string CanonicalRequest(string method, string canonicalUri, IEnumerable<KeyValuePair<string, string>> query,
        IReadOnlyList<string> signedHeaders, Func<string, IEnumerable<string>> headerValues, string hashedPayload)
    {
        ArgumentNullException.ThrowIfNull(query);
        ArgumentNullException.ThrowIfNull(signedHeaders);
        ArgumentNullException.ThrowIfNull(headerValues);
        var pairs = query.Select(p => (Name: RpcSignature.Encode(p.Key), Value: RpcSignature.Encode(p.Value))).ToList();
        pairs.Sort((x, y) => string.CompareOrdinal(x.Name, y.Name) is var byName and not 0 ? byName : string.CompareOrdinal(x.Value, y.Value));
        var names = signedHeaders.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();

        var builder = new StringBuilder(256);
        builder.Append(method.ToUpperInvariant()).Append('\n').Append(canonicalUri).Append('\n');
        builder.AppendJoin('&', pairs.Select(p => p.Name + "=" + p.Value)).Append('\n');
        foreach (var name in names)
        {
            var values = headerValues(name).Select(v => v.Trim()).Order(StringComparer.Ordinal);
            builder.Append(name).Append(':').AppendJoin(',', values).Append('\n');
        }

        builder.Append('\n').AppendJoin(';', names).Append('\n').Append(hashedPayload);
        return builder.ToString();
    }

    /// <summary>The lower-case hex signature of a canonical request.</summary>
    public static string Compute(string canonicalRequest, ReadOnlySpan<byte> accessKeySecret)
    {
        Span<byte> mac = stackalloc byte[32];
        Sign(canonicalRequest, accessKeySecret, mac);
        return Convert.ToHexStringLower(mac);
    }

    /// <summary>True when <paramref name="given"/> (hex, either case) is the signature of the canonical request; compared in constant time.</summary>
    public static bool Verify(string canonicalRequest, ReadOnlySpan<byte> accessKeySecret, string given)
    {
        ArgumentNullException.ThrowIfNull(given);
        Span<byte> received = stackalloc byte[32];
        if (given.Length != 64 || Convert.FromHexString(given, received, out _, out var written) != System.Buffers.OperationStatus.Done || written != 32)
        {
            return false;
        }

        Span<byte> expected = stackalloc byte[32];
        Sign(canonicalRequest, accessKeySecret, expected);
        return CryptographicOperations.FixedTimeEquals(expected, received);
    }

    /// <summary>
    /// For clients and tests: the headers of a V3 RPC request to <c>/</c> (host, the x-acs-* headers,
    /// content-type when there is a body, and Authorization), signing every one of them.
    /// </summary>
    public static Dictionary<string, string> SignHeaders(string method, string host, string action, string version,
        IEnumerable<KeyValuePair<string, string>> query, ReadOnlySpan<byte> body, string? contentType,
        string accessKeyId, ReadOnlySpan<byte> accessKeySecret, string? securityToken = null, DateTimeOffset? date = null, string? nonce = null)
    {
        var headers = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["host"] = host,
            ["x-acs-action"] = action,
            ["x-acs-version"] = version,
            ["x-acs-date"] = (date ?? DateTimeOffset.UtcNow).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
            ["x-acs-signature-nonce"] = nonce ?? Uuid.NewV4(),
            ["x-acs-content-sha256"] = HashHex(body),
        };
        if (contentType is not null)
        {
            headers["content-type"] = contentType;
        }

        if (securityToken is not null)
        {
            headers["x-acs-accesskey-id"] = accessKeyId;
            headers["x-acs-security-token"] = securityToken;
        }

        var signed = headers.Keys.Order(StringComparer.Ordinal).ToList();
        var canonical = CanonicalRequest(method, "/", query, signed, name => headers.TryGetValue(name, out var v) ? [v] : [], headers["x-acs-content-sha256"]);
        headers["Authorization"] = $"{Algorithm} Credential={accessKeyId},SignedHeaders={string.Join(';', signed)},Signature={Compute(canonical, accessKeySecret)}";
        return headers;
    }

    private static void Sign(string canonicalRequest, ReadOnlySpan<byte> accessKeySecret, Span<byte> mac)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(canonicalRequest), digest);
        var stringToSign = Encoding.ASCII.GetBytes(Algorithm + "\n" + Convert.ToHexStringLower(digest));
        HMACSHA256.HashData(accessKeySecret, stringToSign, mac);
    }

    private static string Truncate(string value) => value.Length <= 40 ? value : value[..40] + "…";
}
