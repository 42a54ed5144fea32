using System.Text.Json;
using TdeEngine.Kms.Api;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Ram.Identity;
using TdeEngine.Ram.Policies;

namespace TdeEngine.Ram.Api;

/// <summary>The RAM actions, Alibaba RAM API style (<c>tde ram &lt;ApiName&gt; --Param value</c>), over <see cref="RamService"/>.</summary>
public sealed class RamApi(RamService ram)
{
    private delegate void Handler(RamService ram, KmsCallContext c, ActionParameters p, Utf8JsonWriter w);

    private static readonly Dictionary<string, (Handler Handler, string Help)> Handlers = new(StringComparer.Ordinal)
    {
        ["CreateUser"] = ((ram, c, p, w) => WriteUser(w, ram.CreateUser(c, p.Required("UserName"), p.Optional("DisplayName"))),
            "--UserName NAME [--DisplayName D]"),
        ["CreateRole"] = ((ram, c, p, w) => WriteRole(w, ram.CreateRole(c, p.Required("RoleName"), p.Optional("AssumeRolePolicyDocument"), p.Optional("Description"))),
            "--RoleName NAME [--AssumeRolePolicyDocument JSON] [--Description D]"),
        ["UpdateRole"] = ((ram, c, p, w) => WriteRole(w, ram.UpdateRole(c, p.Required("RoleName"), p.Optional("NewAssumeRolePolicyDocument"), p.Optional("NewDescription"))),
            "--RoleName NAME [--NewAssumeRolePolicyDocument JSON] [--NewDescription D]"),
        ["CreateAccessKey"] = ((ram, c, p, w) =>
        {
            using var key = ram.CreateAccessKey(c, p.Optional("UserName"));
            w.WriteStartObject("AccessKey");
            w.WriteString("AccessKeyId", key.AccessKeyId);
            w.WriteString("AccessKeySecret", key.Secret.Span);   // UTF-8 bytes straight from wiped memory
            w.WriteString("Status", "Active");
            w.WriteString("CreateDate", RamService.FormatDate(key.CreateDate));
            w.WriteEndObject();
        }, "[--UserName NAME]   (without --UserName: a key of the caller itself; the account root's for the root)"),
        ["DeleteAccessKey"] = ((ram, c, p, _) => ram.DeleteAccessKey(c, p.Required("UserAccessKeyId"), p.Optional("UserName")),
            "--UserAccessKeyId ID [--UserName NAME]"),
        ["CreatePolicy"] = ((ram, c, p, w) =>
        {
            var policy = ram.CreatePolicy(c, p.Required("PolicyName"), p.Required("PolicyDocument"), p.Optional("Description"));
            w.WriteStartObject("Policy");
            WritePolicyFields(w, policy);
            w.WriteEndObject();
        }, "--PolicyName NAME --PolicyDocument JSON [--Description D]"),
        ["ListPolicies"] = ((ram, c, p, w) =>
        {
            var type = p.Optional("PolicyType");
            w.WriteStartObject("Policies");
            w.WriteStartArray("Policy");
            foreach (var policy in ram.ListPolicies(c).Where(x => type is null || x.PolicyType == type))
            {
                w.WriteStartObject();
                WritePolicyFields(w, policy);
                w.WriteNumber("AttachmentCount", policy.AttachmentCount);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteBoolean("IsTruncated", false);
        }, "[--PolicyType Custom|System]"),
        ["AttachPolicyToUser"] = ((ram, c, p, _) => ram.AttachPolicy(c, "User", p.Required("UserName"), p.Required("PolicyType"), p.Required("PolicyName")),
            "--PolicyType Custom|System --PolicyName NAME --UserName NAME"),
        ["AttachPolicyToRole"] = ((ram, c, p, _) => ram.AttachPolicy(c, "Role", p.Required("RoleName"), p.Required("PolicyType"), p.Required("PolicyName")),
            "--PolicyType Custom|System --PolicyName NAME --RoleName NAME"),
        ["DetachPolicyFromUser"] = ((ram, c, p, _) => ram.DetachPolicy(c, "User", p.Required("UserName"), p.Required("PolicyType"), p.Required("PolicyName")),
            "--PolicyType Custom|System --PolicyName NAME --UserName NAME"),
        ["DetachPolicyFromRole"] = ((ram, c, p, _) => ram.DetachPolicy(c, "Role", p.Required("RoleName"), p.Required("PolicyType"), p.Required("PolicyName")),
            "--PolicyType Custom|System --PolicyName NAME --RoleName NAME"),
        ["SimulatePolicy"] = ((ram, c, p, w) => WriteDecision(w, Simulate(ram, c, p)),
            "(--UserName NAME | --RoleName NAME | --PolicyDocument JSON) --Action kms:Decrypt --Resource ARN [--SourceIp IP] [--SecureTransport true|false] [--EncryptionContext JSON] [--Tags JSON]"),
    };

    /// <summary>The actions served, with a one-line usage each.</summary>
    public static IReadOnlyList<(string Action, string Usage)> Actions { get; } =
        Handlers.OrderBy(h => h.Key, StringComparer.Ordinal).Select(h => (h.Key, h.Value.Help)).ToList();

    public KmsApiResponse Invoke(KmsCallContext context, string action, IReadOnlyDictionary<string, string> parameters, bool indented = false) =>
        ApiResponse.Execute(context, indented, writer =>
        {
            if (!Handlers.TryGetValue(action ?? "", out var entry))
            {
                throw KmsErrors.InvalidAction(action ?? "", "ram");
            }

            entry.Handler(ram, context, new ActionParameters(parameters), writer);
        });

    private static AccessDecision Simulate(RamService ram, KmsCallContext c, ActionParameters p)
    {
        var context = new Dictionary<string, IReadOnlyList<string>>(StringComparer.OrdinalIgnoreCase);
        if (p.Optional("SourceIp") is { } ip)
        {
            context["acs:SourceIp"] = [ip];
        }

        if (p.OptionalBool("SecureTransport") is { } secure)
        {
            // As a real call carries it: true over HTTPS (and in process), false over plain HTTP.
            context["acs:SecureTransport"] = [secure ? "true" : "false"];
        }

        foreach (var pair in p.Context("EncryptionContext").Pairs)
        {
            // Keys differing only in case are one condition key with several values (as the gateway gathers them).
            context["kms:EncryptionContext:" + pair.Key] = context.TryGetValue("kms:EncryptionContext:" + pair.Key, out var values)
                ? [.. values, pair.Value] : [pair.Value];
        }

        foreach (var tag in p.Tags("Tags"))
        {
            // Tag keys differing only in case, too, are one condition key with several values.
            context["kms:tag/" + tag.Key] = context.TryGetValue("kms:tag/" + tag.Key, out var values) ? [.. values, tag.Value] : [tag.Value];
        }

        var request = new AccessRequest(p.Required("Action"), p.Required("Resource"), context);
        if (p.Optional("PolicyDocument") is { } document)
        {
            return PolicyEvaluator.Evaluate([new AttachedPolicy("(given document)", "Inline", PolicyDocument.Parse(document))], request);
        }

        var principal = p.Optional("UserName") is { } user ? ram.UserPrincipal(c.AccountId, user)
            : p.Optional("RoleName") is { } role ? ram.RolePrincipal(c.AccountId, role, "simulation")
            : throw new KmsException(KmsErrors.Codes.MissingParameter, 400,
                "SimulatePolicy needs the principal or the policy to evaluate: --UserName NAME, --RoleName NAME or --PolicyDocument JSON.");
        return ram.Authorize(principal, request);
    }

    private static void WriteDecision(Utf8JsonWriter w, AccessDecision decision)
    {
        w.WriteString("Decision", decision.Allowed ? "Allow" : decision.Reason == "ExplicitDeny" ? "ExplicitDeny" : "ImplicitDeny");
        w.WriteString("Reason", decision.Reason);
        if (decision.PolicyName is not null)
        {
            w.WriteString("MatchedPolicy", decision.PolicyName);
            w.WriteNumber("MatchedStatement", decision.StatementIndex ?? 0);
        }
    }

    private static void WriteRole(Utf8JsonWriter w, RamRole role)
    {
        w.WriteStartObject("Role");
        w.WriteString("RoleId", role.RoleId);
        w.WriteString("RoleName", role.RoleName);
        w.WriteString("Arn", role.Arn);
        w.WriteString("Description", role.Description);
        w.WriteString("AssumeRolePolicyDocument", role.AssumeRolePolicyDocument);
        w.WriteString("CreateDate", RamService.FormatDate(role.CreateDate));
        w.WriteEndObject();
    }

    private static void WriteUser(Utf8JsonWriter w, RamUser user)
    {
        w.WriteStartObject("User");
        w.WriteString("UserId", user.UserId);
        w.WriteString("UserName", user.UserName);
        w.WriteString("DisplayName", user.DisplayName);
        w.WriteString("CreateDate", RamService.FormatDate(user.CreateDate));
        w.WriteEndObject();
    }

    private static void WritePolicyFields(Utf8JsonWriter w, RamPolicy policy)
    {
        w.WriteString("PolicyName", policy.PolicyName);
        w.WriteString("PolicyType", policy.PolicyType);
        w.WriteString("Description", policy.Description);
        w.WriteString("DefaultVersion", "v1");
        w.WriteString("CreateDate", RamService.FormatDate(policy.CreateDate));
    }
}
