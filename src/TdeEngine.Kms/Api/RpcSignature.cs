using System.Buffers;
using System.Buffers.Text;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using TdeEngine.Kms.Identity;

namespace TdeEngine.Kms.Api;

/// <summary>
/// Alibaba Cloud RPC signature, version 1.0 (HMAC-SHA1): sort the parameters (all but
/// <c>Signature</c>) by percent-encoded name, percent-encode names and values (RFC 3986), join them
/// as <c>name=value</c> with <c>&amp;</c>, sign <c>METHOD&amp;%2F&amp;encode(query)</c> with
/// <c>AccessKeySecret + "&amp;"</c>, and Base64 the result.
/// </summary>
/// <remarks>
/// The server checks it on every request and clients (the storage engine's remote key provider,
/// the benchmarks) sign with it, so the string to sign is written straight into pooled bytes (the
/// query is encoded twice in one pass) and the check compares bytes: no strings per parameter.
/// </remarks>
public static class RpcSignature
{
    private const int MacSize = 20;
    private const int Base64MacSize = 28;

    /// <summary>The Base64 signature of a request (what a client sends as <c>Signature</c>).</summary>
    public static string Compute(string method, IReadOnlyDictionary<string, string> parameters, ReadOnlySpan<byte> accessKeySecret)
    {
        Span<byte> mac = stackalloc byte[MacSize];
        Sign(method, parameters, accessKeySecret, mac);
        return Convert.ToBase64String(mac);
    }

    /// <summary>
    /// For clients: adds the common parameters of a POST request (<c>Action</c>, <c>Format</c>,
    /// <c>Version</c>, <c>AccessKeyId</c>, signature method and version, a fresh <c>SignatureNonce</c>,
    /// <c>Timestamp</c>, and <c>SecurityToken</c> for an STS key) to <paramref name="parameters"/>,
    /// then its <c>Signature</c>; returns the same dictionary.
    /// </summary>
    public static IDictionary<string, string> SignRequest(IDictionary<string, string> parameters, string action, string version, string accessKeyId,
        ReadOnlySpan<byte> accessKeySecret, string? securityToken = null, DateTimeOffset? timestamp = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        parameters["Action"] = action;
        parameters["Format"] = "JSON";
        parameters["Version"] = version;
        parameters["AccessKeyId"] = accessKeyId;
        parameters["SignatureMethod"] = "HMAC-SHA1";
        parameters["SignatureVersion"] = "1.0";
        parameters["SignatureNonce"] = Uuid.NewV4();
        parameters["Timestamp"] = (timestamp ?? DateTimeOffset.UtcNow).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
        if (securityToken is not null)
        {
            parameters["SecurityToken"] = securityToken;
        }

        parameters.Remove("Signature");
        parameters["Signature"] = Compute("POST", parameters.AsReadOnly(), accessKeySecret);
        return parameters;
    }

    /// <summary>True when <paramref name="given"/> is the signature of the request; compared in constant time.</summary>
    public static bool Verify(string method, IReadOnlyDictionary<string, string> parameters, ReadOnlySpan<byte> accessKeySecret, string given)
    {
        Span<byte> mac = stackalloc byte[MacSize];
        Sign(method, parameters, accessKeySecret, mac);
        Span<byte> expected = stackalloc byte[Base64MacSize];
        Base64.EncodeToUtf8(mac, expected, out _, out _);
        Span<byte> received = stackalloc byte[Base64MacSize];
        if (given.Length != Base64MacSize || !Ascii.IsValid(given))
        {
            return false;
        }

        Encoding.ASCII.GetBytes(given, received);
        return CryptographicOperations.FixedTimeEquals(expected, received);
    }

    /// <summary>RFC 3986 percent-encoding as the signature uses it (also valid in a form body).</summary>
    public static string Encode(string value)
    {
        if (!NeedsEncoding(value))
        {
            return value;
        }

        var builder = new StringBuilder(value.Length * 3);
        foreach (var b in Encoding.UTF8.GetBytes(value))
        {
            if (IsUnreserved(b))
            {
                builder.Append((char)b);
            }
            else
            {
                builder.Append('%').Append(HexUpper[b >> 4]).Append(HexUpper[b & 15]);
            }
        }

        return builder.ToString();
    }

    private static ReadOnlySpan<char> HexUpper => "0123456789ABCDEF";

    private static void Sign(string method, IReadOnlyDictionary<string, string> parameters, ReadOnlySpan<byte> accessKeySecret, Span<byte> mac)
    {
        // Sorted by encoded name; a name that needs no encoding sorts as itself.
        var names = new (string SortKey, string Name, string Value)[parameters.Count];
        var count = 0;
        var capacity = method.Length + 8;
        foreach (var (name, value) in parameters)
        {
            if (name == "Signature")
            {
                continue;
            }

            names[count++] = (NeedsEncoding(name) ? Encode(name) : name, name, value);
            // Worst case per char: 3 UTF-8 bytes, each written as %25XX (5 bytes); plus %26 and %3D.
            capacity += (name.Length + value.Length) * 15 + 6;
        }

        Array.Sort(names, 0, count, SortKeyComparer.Instance);
        var buffer = ArrayPool<byte>.Shared.Rent(capacity);
        var key = accessKeySecret.Length <= 255 ? stackalloc byte[accessKeySecret.Length + 1] : new byte[accessKeySecret.Length + 1];
        var at = 0;
        try
        {
            at = Encoding.ASCII.GetBytes(method.ToUpperInvariant(), buffer);
            at += Put(buffer, at, "&%2F&"u8);
            for (var i = 0; i < count; i++)
            {
                if (i > 0)
                {
                    at += Put(buffer, at, "%26"u8);
                }

                at += EncodeTwice(names[i].Name, buffer.AsSpan(at));
                at += Put(buffer, at, "%3D"u8);
                at += EncodeTwice(names[i].Value, buffer.AsSpan(at));
            }

            accessKeySecret.CopyTo(key);
            key[^1] = (byte)'&';
            HMACSHA1.HashData(key, buffer.AsSpan(0, at), mac);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
            // The string to sign holds every value, an Encrypt request's Plaintext too: wiped before
            // the array goes back to the pool (only the bytes written, as this runs on every request).
            CryptographicOperations.ZeroMemory(buffer.AsSpan(0, at));
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    // encode(encode(s)): an unreserved byte stays, any other byte b becomes %25XX (the '%' of %XX encoded again).
    private static int EncodeTwice(string value, Span<byte> destination)
    {
        var at = 0;
        Span<byte> utf8 = stackalloc byte[4];
        for (var c = 0; c < value.Length; c++)
        {
            if (value[c] < 0x80)
            {
                at += EncodeTwice((byte)value[c], destination[at..]);
                continue;
            }

            // Outside ASCII: the UTF-8 of the scalar (a lone surrogate becomes U+FFFD, as Encoding.UTF8 does).
            Rune.DecodeFromUtf16(value.AsSpan(c), out var rune, out var consumed);
            c += consumed - 1;
            var length = rune.EncodeToUtf8(utf8);
            for (var i = 0; i < length; i++)
            {
                at += EncodeTwice(utf8[i], destination[at..]);
            }
        }

        return at;
    }

    private static int EncodeTwice(byte b, Span<byte> destination)
    {
        if (IsUnreserved(b))
        {
            destination[0] = b;
            return 1;
        }

        destination[0] = (byte)'%';
        destination[1] = (byte)'2';
        destination[2] = (byte)'5';
        destination[3] = (byte)HexUpper[b >> 4];
        destination[4] = (byte)HexUpper[b & 15];
        return 5;
    }

    private static int Put(byte[] buffer, int at, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(buffer.AsSpan(at));
        return bytes.Length;
    }

    private static bool NeedsEncoding(string value)
    {
        foreach (var c in value)
        {
            if (c > 127 || !IsUnreserved((byte)c))
            {
                return true;
            }
        }

        return false;
    }

    private static bool IsUnreserved(byte b) => char.IsAsciiLetterOrDigit((char)b) || b is (byte)'-' or (byte)'_' or (byte)'.' or (byte)'~';

    private sealed class SortKeyComparer : IComparer<(string SortKey, string Name, string Value)>
    {
        public static readonly SortKeyComparer Instance = new();

        public int Compare((string SortKey, string Name, string Value) x, (string SortKey, string Name, string Value) y) =>
            string.CompareOrdinal(x.SortKey, y.SortKey);
    }
}
