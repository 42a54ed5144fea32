using System.Globalization;
using System.Text.Json;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;

namespace TdeEngine.Kms.Api;

/// <summary>Typed access to the string parameters of an OpenAPI call, with Alibaba's error codes.</summary>
public sealed class ActionParameters(IReadOnlyDictionary<string, string> values)
{
    public string Required(string name) =>
        values.TryGetValue(name, out var value) && !string.IsNullOrEmpty(value) ? value : throw KmsErrors.MissingParameter(name);

    /// <summary>A parameter that must be sent but may be empty (an empty Description clears it).</summary>
    public string RequiredAllowEmpty(string name) => values.TryGetValue(name, out var value) ? value : throw KmsErrors.MissingParameter(name);

    public string? Optional(string name) => values.TryGetValue(name, out var value) && value.Length > 0 ? value : null;

    public int? OptionalInt(string name, int min = int.MinValue, int max = int.MaxValue)
    {
        var text = Optional(name);
        if (text is null)
        {
            return null;
        }

        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) || value < min || value > max)
        {
            throw KmsErrors.InvalidParameter(name, $"expected an integer from {min} to {max}.");
        }

        return value;
    }

    public long? OptionalLong(string name)
    {
        var text = Optional(name);
        if (text is null)
        {
            return null;
        }

        return long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw KmsErrors.InvalidParameter(name, "expected an integer.");
    }

    public bool? OptionalBool(string name)
    {
        var text = Optional(name);
        return text is null ? null
            : string.Equals(text, "true", StringComparison.OrdinalIgnoreCase) ? true
            : string.Equals(text, "false", StringComparison.OrdinalIgnoreCase) ? false
            : throw KmsErrors.InvalidParameter(name, "expected true or false.");
    }

    public bool RequiredBool(string name) => OptionalBool(name) ?? throw KmsErrors.MissingParameter(name);

    public int PageNumber => OptionalInt("PageNumber", 1) ?? 1;

    public int PageSize => OptionalInt("PageSize", 1, 100) ?? 10;

    public EncryptionContext Context(string name) => EncryptionContext.Parse(Optional(name), name);

    /// <summary>Tags as Alibaba sends them: <c>[{"TagKey":"k","TagValue":"v"}]</c>.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Tags(string name)
    {
        var text = Optional(name);
        if (text is null)
        {
            return [];
        }

        var result = new List<KeyValuePair<string, string>>();
        try
        {
            using var document = JsonDocument.Parse(text);
            if (document.RootElement.ValueKind != JsonValueKind.Array)
            {
                throw KmsErrors.InvalidParameter(name, "expected a JSON array such as [{\"TagKey\":\"env\",\"TagValue\":\"prod\"}].");
            }

            foreach (var item in document.RootElement.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("TagKey", out var key) || key.ValueKind != JsonValueKind.String)
                {
                    throw KmsErrors.InvalidParameter(name, "every element needs a string TagKey, for example {\"TagKey\":\"env\",\"TagValue\":\"prod\"}.");
                }

                var value = item.TryGetProperty("TagValue", out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : "";
                result.Add(new(key.GetString()!, value));
            }
        }
        catch (JsonException)
        {
            throw KmsErrors.InvalidParameter(name, "expected a JSON array such as [{\"TagKey\":\"env\",\"TagValue\":\"prod\"}].");
        }
        catch (InvalidOperationException)
        {
            throw KmsErrors.InvalidParameter(name, "a TagKey or TagValue is not valid Unicode text (an unpaired surrogate escape such as \\ud800).");
        }

        return result;
    }

    /// <summary>A JSON array of strings (<c>["a","b"]</c>); a bare comma-separated list is accepted too.</summary>
    public IReadOnlyList<string> StringList(string name)
    {
        var text = Required(name).Trim();
        if (!text.StartsWith('['))
        {
            return text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        }

        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.EnumerateArray()
                .Select(e => e.ValueKind == JsonValueKind.String ? e.GetString()! : throw KmsErrors.InvalidParameter(name, "expected strings."))
                .ToList();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw KmsErrors.InvalidParameter(name, "expected a JSON array of strings such as [\"env\",\"team\"].");
        }
    }

    /// <summary>
    /// ListKeys filters: <c>[{"Key":"KeyState","Values":["Enabled"]}]</c>, AND across keys, OR within values
    /// (a key given twice has its values merged).
    /// </summary>
    public IReadOnlyList<(string Key, IReadOnlyList<string> Values)> Filters(string name)
    {
        var text = Optional(name);
        if (text is null)
        {
            return [];
        }

        try
        {
            using var document = JsonDocument.Parse(text);
            var filters = new List<(string, IReadOnlyList<string>)>();
            foreach (var item in document.RootElement.EnumerateArray())
            {
                var key = item.GetProperty("Key").GetString() ?? throw new InvalidOperationException();
                var list = item.GetProperty("Values").EnumerateArray().Select(v => v.GetString() ?? throw new InvalidOperationException()).ToList();
                filters.Add((key, list));
            }

            if (filters.Count > 10)
            {
                throw KmsErrors.InvalidParameter(name, "at most 10 filters.");
            }

            // As Alibaba documents: a Key given twice ORs its values, as if they were in one list.
            return filters.GroupBy(f => f.Item1, StringComparer.Ordinal)
                .Select(g => (g.Key, (IReadOnlyList<string>)g.SelectMany(f => f.Item2).ToList()))
                .ToList();
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException)
        {
            throw KmsErrors.InvalidParameter(name, "expected [{\"Key\":\"KeyState\",\"Values\":[\"Enabled\"]}].");
        }
    }
}
