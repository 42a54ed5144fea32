using System.Security.Cryptography;
using System.Text;

namespace TdeEngine.Server;

/// <summary>
/// Alibaba Cloud RPC signature, version 1.0 (HMAC-SHA1): sort the parameters (all but
/// <c>Signature</c>) by name, percent-encode names and values (RFC 3986), join them with <c>&amp;</c>,
/// sign <c>METHOD&amp;%2F&amp;encode(query)</c> with <c>AccessKeySecret + "&amp;"</c>, Base64 the result.
/// </summary>
internal static class RpcSignature
{
    public static string Compute(string method, IReadOnlyDictionary<string, string> parameters, ReadOnlySpan<byte> accessKeySecret)
    {
        var canonical = string.Join('&', parameters
            .Where(p => p.Key != "Signature")
            .Select(p => (Key: Encode(p.Key), Value: Encode(p.Value)))
            .OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => p.Key + "=" + p.Value));
        var stringToSign = method.ToUpperInvariant() + "&" + Encode("/") + "&" + Encode(canonical);
        var key = new byte[accessKeySecret.Length + 1];
        try
        {
            accessKeySecret.CopyTo(key);
            key[^1] = (byte)'&';
            return Convert.ToBase64String(HMACSHA1.HashData(key, Encoding.UTF8.GetBytes(stringToSign)));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
    }

    /// <summary>Compares a given signature with the expected one in constant time.</summary>
    public static bool Matches(string expected, string given) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(expected), Encoding.ASCII.GetBytes(given));

    // RFC 3986 unreserved characters stay; everything else is %XX of its UTF-8 bytes (upper-case hex).
    public static string Encode(string value)
    {
        var builder = new StringBuilder(value.Length * 2);
        foreach (var b in Encoding.UTF8.GetBytes(value))
        {
            var c = (char)b;
            if (char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '~')
            {
                builder.Append(c);
            }
            else
            {
                builder.Append('%').Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
            }
        }

        return builder.ToString();
    }
}
