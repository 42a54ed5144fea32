using System.Text.Json;
using TdeEngine.Kms.Errors;

namespace TdeEngine.Ram.Policies;

/// <summary>
/// A role's trust policy (<c>AssumeRolePolicyDocument</c>): who may assume the role through STS.
/// <code>{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::1234:root"]}}]}</code>
/// A <c>RAM</c> principal is an account (<c>acs:ram::ACCOUNT:root</c>: any RAM user or role of that
/// account whose own policies allow <c>sts:AssumeRole</c> on the role) or one user
/// (<c>acs:ram::ACCOUNT:user/NAME</c>). A <c>Service</c> principal (<c>rds.aliyuncs.com</c>) names
/// a cloud service; services act in process (<see cref="RamService.RolePrincipal"/>), not through STS.
/// A statement may carry a <c>Condition</c> in the policy language, over <c>sts:ExternalId</c> (the
/// ExternalId given to AssumeRole) and <c>acs:SourceIp</c>; it applies only when its conditions hold.
/// </summary>
public sealed class TrustPolicy
{
    private readonly List<(bool Allow, List<string> Ram, List<PolicyCondition> Conditions)> _statements;

    private TrustPolicy(List<(bool Allow, List<string> Ram, List<PolicyCondition> Conditions)> statements) => _statements = statements;

    /// <summary>Parses and checks a trust policy; errors name the offending field.</summary>
    public static TrustPolicy Parse(string document)
    {
        try
        {
            return ParseDocument(document);
        }
        catch (InvalidOperationException)
        {
            throw PolicyDocument.UnpairedSurrogate("AssumeRolePolicyDocument");
        }
    }

    private static TrustPolicy ParseDocument(string document)
    {
        using (var json = PolicyDocument.ParseJson(document, "AssumeRolePolicyDocument"))
        {
            var root = json.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("Statement", out var statements) || statements.ValueKind != JsonValueKind.Array)
            {
                throw Malformed("Statement", "a trust policy needs a Statement array.");
            }

            var parsed = new List<(bool, List<string>, List<PolicyCondition>)>();
            var index = 0;
            foreach (var statement in statements.EnumerateArray())
            {
                var at = $"Statement[{index++}]";
                if (statement.ValueKind != JsonValueKind.Object)
                {
                    throw Malformed(at, "a statement must be an object");
                }

                var effect = statement.TryGetProperty("Effect", out var e) && e.ValueKind == JsonValueKind.String ? e.GetString() : null;
                if (effect is not ("Allow" or "Deny"))
                {
                    throw Malformed(at + ".Effect", "use Allow or Deny");
                }

                var actions = PolicyDocument.StringOrArray(statement, "Action", at);
                if (!actions.Contains("sts:AssumeRole", StringComparer.Ordinal))
                {
                    throw Malformed(at + ".Action", "a trust policy statement is about sts:AssumeRole");
                }

                if (!statement.TryGetProperty("Principal", out var principal) || principal.ValueKind != JsonValueKind.Object)
                {
                    throw Malformed(at + ".Principal", "name who may assume the role: {\"RAM\":[\"acs:ram::ACCOUNT:root\"]} or {\"Service\":[\"rds.aliyuncs.com\"]}");
                }

                var ram = principal.TryGetProperty("RAM", out _) ? PolicyDocument.StringOrArray(principal, "RAM", at + ".Principal") : [];
                foreach (var arn in ram)
                {
                    if (!arn.StartsWith("acs:ram::", StringComparison.Ordinal) || !(arn.EndsWith(":root", StringComparison.Ordinal) || arn.Contains(":user/", StringComparison.Ordinal)))
                    {
                        throw Malformed(at + ".Principal.RAM", $"'{arn}' is not acs:ram::ACCOUNT:root or acs:ram::ACCOUNT:user/NAME");
                    }

                    // Principals are compared as written: a wildcard would never match, and a Deny holding one would silently not apply.
                    if (arn.IndexOfAny(['*', '?']) >= 0)
                    {
                        throw Malformed(at + ".Principal.RAM", $"'{arn}' holds a wildcard; name the account (acs:ram::ACCOUNT:root) or each user (acs:ram::ACCOUNT:user/NAME)");
                    }
                }

                foreach (var property in statement.EnumerateObject())
                {
                    if (property.Name is not ("Effect" or "Action" or "Principal" or "Condition"))
                    {
                        throw Malformed($"{at}.{property.Name}", "unknown field; a trust policy statement has Effect, Action, Principal and Condition");
                    }
                }

                parsed.Add((effect == "Allow", ram, PolicyDocument.ParseConditions(statement, at)));
            }

            return new TrustPolicy(parsed);
        }
    }

    /// <summary>
    /// True when a caller of <paramref name="accountId"/> (a user named <paramref name="userName"/>, or
    /// null) is trusted, with <paramref name="conditions"/> (<c>sts:ExternalId</c>, <c>acs:SourceIp</c>)
    /// for statements that have a Condition.
    /// </summary>
    public bool Trusts(string accountId, string? userName, IReadOnlyDictionary<string, IReadOnlyList<string>>? conditions = null)
    {
        conditions ??= new Dictionary<string, IReadOnlyList<string>>();
        bool Applies((bool Allow, List<string> Ram, List<PolicyCondition> Conditions) s) =>
            s.Ram.Any(arn => arn == $"acs:ram::{accountId}:root" ||
                             (userName is not null && string.Equals(arn, $"acs:ram::{accountId}:user/{userName}", StringComparison.OrdinalIgnoreCase))) &&
            s.Conditions.All(c => PolicyEvaluator.ConditionHolds(c, conditions, s.Allow ? PolicyEffect.Allow : PolicyEffect.Deny));

        if (_statements.Any(s => !s.Allow && Applies(s)))
        {
            return false;
        }

        return _statements.Any(s => s.Allow && Applies(s));
    }

    private static KmsException Malformed(string field, string problem) => PolicyDocument.Malformed(field, problem.EndsWith('.') ? problem : problem + ".");
}
