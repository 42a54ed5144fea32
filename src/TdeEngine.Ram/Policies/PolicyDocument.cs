using System.Text.Json;
using TdeEngine.Kms.Errors;

namespace TdeEngine.Ram.Policies;

/// <summary>
/// A RAM policy document: <c>{"Version":"1","Statement":[{"Effect","Action" (or "NotAction"),"Resource","Condition"}]}</c>.
/// Parsing validates every field and names the offending one in the error.
/// </summary>
public sealed class PolicyDocument
{
    private static readonly HashSet<string> Operators = new(StringComparer.Ordinal)
    {
        "StringEquals", "StringNotEquals", "StringLike", "StringNotLike", "IpAddress", "NotIpAddress", "Bool",
    };

    private PolicyDocument(IReadOnlyList<PolicyStatement> statements, string json)
    {
        Statements = statements;
        Json = json;
    }

    public IReadOnlyList<PolicyStatement> Statements { get; }

    /// <summary>The document as given.</summary>
    public string Json { get; }

    /// <summary>Parses and validates a document; errors are <c>MalformedPolicyDocument</c> naming the field.</summary>
    public static PolicyDocument Parse(string json)
    {
        try
        {
            return ParseDocument(json);
        }
        catch (InvalidOperationException)
        {
            throw UnpairedSurrogate("PolicyDocument");
        }
    }

    private static PolicyDocument ParseDocument(string json)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            throw Malformed("PolicyDocument", "the document is empty.");
        }

        using (var document = ParseJson(json, "PolicyDocument"))
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw Malformed("PolicyDocument", "it must be a JSON object.");
            }

            if (!root.TryGetProperty("Version", out var version) || version.ValueKind != JsonValueKind.String || version.GetString() != "1")
            {
                throw Malformed("Version", "it must be \"1\".");
            }

            if (!root.TryGetProperty("Statement", out var statementsElement) || statementsElement.ValueKind != JsonValueKind.Array ||
                statementsElement.GetArrayLength() == 0)
            {
                throw Malformed("Statement", "it must be a non-empty array of statements.");
            }

            var statements = new List<PolicyStatement>();
            var index = 0;
            foreach (var element in statementsElement.EnumerateArray())
            {
                statements.Add(ParseStatement(element, $"Statement[{index}]"));
                index++;
            }

            foreach (var property in root.EnumerateObject())
            {
                if (property.Name is not ("Version" or "Statement"))
                {
                    throw Malformed(property.Name, "unknown field; a policy has Version and Statement.");
                }
            }

            return new PolicyDocument(statements, json);
        }
    }

    private static PolicyStatement ParseStatement(JsonElement element, string path)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw Malformed(path, "a statement must be an object.");
        }

        var effect = element.TryGetProperty("Effect", out var e) && e.ValueKind == JsonValueKind.String ? e.GetString() : null;
        if (effect is not ("Allow" or "Deny"))
        {
            throw Malformed(path + ".Effect", "it must be \"Allow\" or \"Deny\".");
        }

        // Action lists what the statement covers; NotAction (as Alibaba RAM allows) everything but what it lists.
        var hasAction = element.TryGetProperty("Action", out _);
        var notAction = element.TryGetProperty("NotAction", out _);
        if (hasAction && notAction)
        {
            throw Malformed(path + ".NotAction", "a statement has Action or NotAction, not both.");
        }

        var actionField = notAction ? "NotAction" : "Action";
        var actions = StringOrArray(element, actionField, path);
        foreach (var action in actions)
        {
            if (action != "*" && !action.Contains(':', StringComparison.Ordinal))
            {
                throw Malformed($"{path}.{actionField}", $"'{action}' must be service:ApiName, for example kms:Decrypt or kms:*.");
            }
        }

        var resources = StringOrArray(element, "Resource", path);
        var conditions = ParseConditions(element, path);
        foreach (var property in element.EnumerateObject())
        {
            if (property.Name is not ("Effect" or "Action" or "NotAction" or "Resource" or "Condition"))
            {
                throw Malformed($"{path}.{property.Name}", "unknown field; a statement has Effect, Action (or NotAction), Resource and Condition.");
            }
        }

        return new PolicyStatement(effect == "Allow" ? PolicyEffect.Allow : PolicyEffect.Deny, actions, resources, conditions) { NotAction = notAction };
    }

    /// <summary>The <c>Condition</c> of a statement at <paramref name="path"/> (empty when it has none); errors name the field.</summary>
    internal static List<PolicyCondition> ParseConditions(JsonElement statement, string path)
    {
        var conditions = new List<PolicyCondition>();
        if (statement.TryGetProperty("Condition", out var conditionElement))
        {
            if (conditionElement.ValueKind != JsonValueKind.Object)
            {
                throw Malformed(path + ".Condition", "it must be an object of operators.");
            }

            foreach (var op in conditionElement.EnumerateObject())
            {
                if (!Operators.Contains(op.Name))
                {
                    throw Malformed($"{path}.Condition.{op.Name}", $"unknown operator; use {string.Join(", ", Operators.Order())}.");
                }

                if (op.Value.ValueKind != JsonValueKind.Object || !op.Value.EnumerateObject().Any())
                {
                    throw Malformed($"{path}.Condition.{op.Name}", "it must map one or more condition keys to values.");
                }

                foreach (var key in op.Value.EnumerateObject())
                {
                    var values = key.Value.ValueKind switch
                    {
                        JsonValueKind.String => [key.Value.GetString()!],
                        JsonValueKind.True or JsonValueKind.False => [key.Value.GetBoolean() ? "true" : "false"],
                        JsonValueKind.Array => key.Value.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.String ? v.GetString()! :
                            throw Malformed($"{path}.Condition.{op.Name}.{key.Name}", "values must be strings.")).ToList(),
                        _ => throw Malformed($"{path}.Condition.{op.Name}.{key.Name}", "a value must be a string or an array of strings."),
                    };
                    if (values.Count == 0)
                    {
                        // As for Action and Resource: an empty list would make the condition always or never hold, silently.
                        throw Malformed($"{path}.Condition.{op.Name}.{key.Name}", "it must name at least one value.");
                    }

                    if (op.Name is "IpAddress" or "NotIpAddress")
                    {
                        foreach (var value in values)
                        {
                            if (!IpRange.TryParse(value, out _))
                            {
                                throw Malformed($"{path}.Condition.{op.Name}.{key.Name}", $"'{value}' is not an IP address or CIDR range; write IPv4 as four decimal numbers (10.1.0.0/16) and IPv6 without a zone (fd00::/8).");
                            }
                        }
                    }

                    if (op.Name == "Bool" && values.Any(v => v is not ("true" or "false")))
                    {
                        throw Malformed($"{path}.Condition.Bool.{key.Name}", "Bool takes true or false.");
                    }

                    conditions.Add(new PolicyCondition(op.Name, key.Name, values));
                }
            }
        }


        return conditions;
    }

    /// <summary>Parses JSON text; invalid JSON (a member named twice included) is <c>MalformedPolicyDocument</c> at <paramref name="field"/>.</summary>
    internal static JsonDocument ParseJson(string json, string field)
    {
        try
        {
            // A field named twice is refused: the evaluator would read its last value, a person or another tool its first.
            return JsonDocument.Parse(json, new JsonDocumentOptions { AllowDuplicateProperties = false });
        }
        catch (JsonException e)
        {
            throw Malformed(field, $"it is not valid JSON ({e.Message}).");
        }
    }

    /// <summary>A required member that is a string or an array of non-empty strings.</summary>
    internal static List<string> StringOrArray(JsonElement element, string name, string path)
    {
        if (!element.TryGetProperty(name, out var value))
        {
            throw Malformed($"{path}.{name}", "it is required.");
        }

        var list = value.ValueKind switch
        {
            JsonValueKind.String => [value.GetString()!],
            JsonValueKind.Array => value.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.String ? v.GetString()! :
                throw Malformed($"{path}.{name}", "every entry must be a string.")).ToList(),
            _ => throw Malformed($"{path}.{name}", "it must be a string or an array of strings."),
        };
        if (list.Count == 0 || list.Any(string.IsNullOrWhiteSpace))
        {
            throw Malformed($"{path}.{name}", "it must name at least one non-empty value.");
        }

        return list;
    }

    // Valid JSON whose escapes decode to invalid UTF-16, such as a lone "\ud800": JsonElement's
    // GetString and Name throw InvalidOperationException for it.
    internal static KmsException UnpairedSurrogate(string field) =>
        Malformed(field, "a name or value is not valid Unicode text (an unpaired surrogate escape such as \\ud800).");

    internal static KmsException Malformed(string field, string reason) =>
        new("MalformedPolicyDocument", 400, $"The policy document is malformed at {field}: {reason}");
}

public enum PolicyEffect
{
    Allow,
    Deny,
}

/// <summary>One statement of a policy.</summary>
public sealed record PolicyStatement(PolicyEffect Effect, IReadOnlyList<string> Actions, IReadOnlyList<string> Resources,
    IReadOnlyList<PolicyCondition> Conditions)
{
    /// <summary>True for a <c>NotAction</c> statement: it covers every action that <see cref="Actions"/> does not match.</summary>
    public bool NotAction { get; init; }
}

/// <summary>One condition: an operator applied to a condition key with one or more values (OR).</summary>
public sealed record PolicyCondition(string Operator, string Key, IReadOnlyList<string> Values);
