using System.Net;

namespace TdeEngine.Ram.Policies;

/// <summary>What a caller asks to do: an action on a resource, with the condition keys of the call.</summary>
/// <param name="Action">The RAM action, for example <c>kms:Decrypt</c>.</param>
/// <param name="Resource">The ARN of the resource, for example <c>acs:kms:cn-hangzhou:123:key/abc</c>.</param>
/// <param name="Context">Condition keys (case-insensitive) to their values: <c>acs:SourceIp</c>,
/// <c>kms:EncryptionContext:db</c>, <c>kms:tag/env</c>, <c>acs:SecureTransport</c>.</param>
public sealed record AccessRequest(string Action, string Resource, IReadOnlyDictionary<string, IReadOnlyList<string>> Context);

/// <summary>A policy as attached to a principal.</summary>
public sealed record AttachedPolicy(string PolicyName, string PolicyType, PolicyDocument Document);

/// <summary>The outcome of an evaluation, and the statement that decided it (none for an implicit deny).</summary>
public sealed record AccessDecision(bool Allowed, string Reason, string? PolicyName = null, int? StatementIndex = null)
{
    public static AccessDecision ImplicitDeny { get; } = new(false, "ImplicitDeny");
}

/// <summary>
/// RAM evaluation: an explicit Deny in any matching statement wins; otherwise a matching Allow
/// allows; otherwise the request is implicitly denied.
/// </summary>
public static class PolicyEvaluator
{
    public static AccessDecision Evaluate(IEnumerable<AttachedPolicy> policies, AccessRequest request)
    {
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(request);
        AccessDecision? allow = null;
        foreach (var policy in policies)
        {
            for (var i = 0; i < policy.Document.Statements.Count; i++)
            {
                var statement = policy.Document.Statements[i];
                if (!Matches(statement, request))
                {
                    continue;
                }

                if (statement.Effect == PolicyEffect.Deny)
                {
                    return new AccessDecision(false, "ExplicitDeny", policy.PolicyName, i);
                }

                allow ??= new AccessDecision(true, "ExplicitAllow", policy.PolicyName, i);
            }
        }

        return allow ?? AccessDecision.ImplicitDeny;
    }

    private static bool Matches(PolicyStatement statement, AccessRequest request) =>
        statement.Actions.Any(a => Wildcard.IsMatch(a, request.Action, ignoreCase: true)) != statement.NotAction &&
        statement.Resources.Any(r => Wildcard.IsMatch(r, request.Resource, ignoreCase: false)) &&
        statement.Conditions.All(c => ConditionHolds(c, request.Context, statement.Effect));

    /// <summary>
    /// Whether a condition holds for the call. A condition key can have several values in one call
    /// (encryption-context keys that differ only in case: <c>{"Tenant":"a","tenant":"b"}</c>); then,
    /// for an Allow, the condition must hold for every value, and for a Deny, for any value, so that
    /// a value the policy does not name never slips past either.
    /// </summary>
    internal static bool ConditionHolds(PolicyCondition condition, IReadOnlyDictionary<string, IReadOnlyList<string>> context, PolicyEffect effect)
    {
        if (!context.TryGetValue(condition.Key, out var actual) || actual.Count == 0)
        {
            // A missing key fails every operator but the negated ones: a value that is not there is not
            // one of the values, not like them, and not in the ranges.
            return condition.Operator is "StringNotEquals" or "StringNotLike" or "NotIpAddress";
        }

        bool HoldsFor(string value) => condition.Operator switch
        {
            "StringEquals" => condition.Values.Contains(value, StringComparer.Ordinal),
            "StringNotEquals" => !condition.Values.Contains(value, StringComparer.Ordinal),
            "StringLike" => condition.Values.Any(p => Wildcard.IsMatch(p, value, ignoreCase: false)),
            "StringNotLike" => !condition.Values.Any(p => Wildcard.IsMatch(p, value, ignoreCase: false)),
            "IpAddress" => InAnyRange(value, condition.Values),
            "NotIpAddress" => !InAnyRange(value, condition.Values),
            "Bool" => condition.Values.Contains(value, StringComparer.OrdinalIgnoreCase),
            _ => false,
        };

        return effect == PolicyEffect.Allow ? actual.All(HoldsFor) : actual.Any(HoldsFor);
    }

    private static bool InAnyRange(string address, IReadOnlyList<string> ranges) =>
        IPAddress.TryParse(address, out var ip) && ranges.Any(r => IpRange.TryParse(r, out var range) && range.Contains(ip));
}

/// <summary>Glob matching with <c>*</c> (any run) and <c>?</c> (one character).</summary>
internal static class Wildcard
{
    public static bool IsMatch(string pattern, string text, bool ignoreCase)
    {
        var comparison = ignoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        int p = 0, t = 0, star = -1, mark = 0;
        while (t < text.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || string.Compare(pattern, p, text, t, 1, comparison) == 0) && pattern[p] != '*')
            {
                p++;
                t++;
            }
            else if (p < pattern.Length && pattern[p] == '*')
            {
                star = p++;
                mark = t;
            }
            else if (star >= 0)
            {
                p = star + 1;
                t = ++mark;
            }
            else
            {
                return false;
            }
        }

        while (p < pattern.Length && pattern[p] == '*')
        {
            p++;
        }

        return p == pattern.Length;
    }
}
