using System.Text;
using System.Text.Json;
using TdeEngine.Kms.Errors;

namespace TdeEngine.Kms.Envelope;

/// <summary>
/// An Alibaba KMS EncryptionContext: a JSON object of string keys to string values that is bound to
/// a ciphertext as additional authenticated data. Decrypt must present the same pairs.
/// </summary>
/// <remarks>
/// <para>The canonical form (what is authenticated) is the UTF-8 of the object with its members
/// sorted by key in code-point order, no whitespace, and only <c>"</c>, <c>\</c> and control
/// characters escaped. It equals Python's
/// <c>json.dumps(ctx, sort_keys=True, separators=(",", ":"), ensure_ascii=False)</c>, and it is
/// empty (zero bytes) for an empty context. See docs/file-format.md.</para>
/// <para>Instances are immutable and thread-safe.</para>
/// </remarks>
public sealed class EncryptionContext
{
    /// <summary>Largest canonical form accepted, in bytes.</summary>
    public const int MaxCanonicalBytes = 8192;

    private readonly KeyValuePair<string, string>[] _pairs;
    private readonly byte[] _canonical;

    /// <summary>The empty context.</summary>
    public static EncryptionContext Empty { get; } = new([]);

    private EncryptionContext(KeyValuePair<string, string>[] sortedPairs)
    {
        _pairs = sortedPairs;
        _canonical = sortedPairs.Length == 0 ? [] : Canonicalize(sortedPairs);
    }

    /// <summary>The pairs, sorted by key in code-point order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Pairs => _pairs;

    /// <summary>True when the context has no pairs.</summary>
    public bool IsEmpty => _pairs.Length == 0;

    /// <summary>The canonical bytes that are bound as AAD.</summary>
    public ReadOnlySpan<byte> CanonicalBytes => _canonical;

    /// <summary>Builds a context from pairs. Keys must be unique and non-empty.</summary>
    public static EncryptionContext From(IEnumerable<KeyValuePair<string, string>> pairs, string parameterName = "EncryptionContext")
    {
        ArgumentNullException.ThrowIfNull(pairs);
        var list = new List<KeyValuePair<string, string>>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var pair in pairs)
        {
            if (string.IsNullOrEmpty(pair.Key))
            {
                throw KmsErrors.InvalidParameter(parameterName, "keys must be non-empty strings.");
            }

            if (!seen.Add(pair.Key))
            {
                throw KmsErrors.InvalidParameter(parameterName, $"the key '{pair.Key}' appears more than once.");
            }

            Validate(pair.Key, parameterName);
            Validate(pair.Value ?? throw KmsErrors.InvalidParameter(parameterName, $"the value of '{pair.Key}' must be a string."), parameterName);
            list.Add(pair);
        }

        if (list.Count == 0)
        {
            return Empty;
        }

        list.Sort(static (a, b) => CompareCodePoints(a.Key, b.Key));
        var context = new EncryptionContext([.. list]);
        if (context._canonical.Length > MaxCanonicalBytes)
        {
            throw KmsErrors.InvalidParameter(parameterName, $"the context is longer than {MaxCanonicalBytes} bytes.");
        }

        return context;
    }

    /// <summary>
    /// Parses the JSON form used by the OpenAPI (<c>{"k":"v"}</c>). Null or blank means empty.
    /// </summary>
    public static EncryptionContext Parse(string? json, string parameterName = "EncryptionContext")
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            return Empty;
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException)
        {
            throw KmsErrors.InvalidParameter(parameterName, "it must be a JSON object of string keys and string values, for example {\"db\":\"orders\"}.");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw KmsErrors.InvalidParameter(parameterName, "it must be a JSON object, for example {\"db\":\"orders\"}.");
            }

            var pairs = new List<KeyValuePair<string, string>>();
            try
            {
                foreach (var property in document.RootElement.EnumerateObject())
                {
                    if (property.Value.ValueKind != JsonValueKind.String)
                    {
                        throw KmsErrors.InvalidParameter(parameterName, $"the value of '{property.Name}' must be a string.");
                    }

                    pairs.Add(new(property.Name, property.Value.GetString()!));
                }
            }
            catch (InvalidOperationException)
            {
                // Valid JSON whose escapes decode to invalid UTF-16, such as a lone "\ud800".
                throw KmsErrors.InvalidParameter(parameterName, "a key or value is not valid Unicode text (an unpaired surrogate escape such as \\ud800).");
            }

            return From(pairs, parameterName);
        }
    }

    /// <summary>The compact JSON form (the canonical form as a string, or <c>{}</c> when empty).</summary>
    public override string ToString() => _pairs.Length == 0 ? "{}" : Encoding.UTF8.GetString(_canonical);

    private static void Validate(string s, string parameterName)
    {
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(c))
            {
                throw KmsErrors.InvalidParameter(parameterName, "it contains an unpaired UTF-16 surrogate.");
            }
        }
    }

    // Code-point order equals the order of the UTF-8 encodings, which is what Python's sort_keys uses.
    private static int CompareCodePoints(string a, string b)
    {
        var ea = a.EnumerateRunes();
        var eb = b.EnumerateRunes();
        while (true)
        {
            var hasA = ea.MoveNext();
            var hasB = eb.MoveNext();
            if (!hasA || !hasB)
            {
                return hasA.CompareTo(hasB);
            }

            var c = ea.Current.Value.CompareTo(eb.Current.Value);
            if (c != 0)
            {
                return c;
            }
        }
    }

    private static byte[] Canonicalize(KeyValuePair<string, string>[] pairs)
    {
        var sb = new StringBuilder();
        sb.Append('{');
        for (var i = 0; i < pairs.Length; i++)
        {
            if (i > 0)
            {
                sb.Append(',');
            }

            AppendString(sb, pairs[i].Key);
            sb.Append(':');
            AppendString(sb, pairs[i].Value);
        }

        sb.Append('}');
        return Encoding.UTF8.GetBytes(sb.ToString());
    }

    private static void AppendString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c < 0x20)
                    {
                        sb.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        sb.Append(c);
                    }

                    break;
            }
        }

        sb.Append('"');
    }
}
