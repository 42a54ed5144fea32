using System.Text.Json;
using TdeEngine.Kms.Api;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;

namespace TdeEngine.Ram.Api;

/// <summary>
/// The STS actions (Alibaba STS API 2015-04-01) over <see cref="RamService"/>: AssumeRole, which
/// hands out temporary credentials for a role session, and GetCallerIdentity.
/// </summary>
public sealed class StsApi(RamService ram)
{
    /// <summary>The actions served.</summary>
    public static IReadOnlyList<string> Actions { get; } = ["AssumeRole", "GetCallerIdentity"];

    public KmsApiResponse Invoke(KmsCallContext context, string action, IReadOnlyDictionary<string, string> parameters, bool indented = false) =>
        ApiResponse.Execute(context, indented, writer =>
        {
            var p = new ActionParameters(parameters);
            switch (action)
            {
                case "AssumeRole":
                    AssumeRole(context, p, writer);
                    break;
                case "GetCallerIdentity":
                    CallerIdentity(context.Principal, writer);
                    break;
                default:
                    throw KmsErrors.InvalidAction(action ?? "", "ram");
            }
        });

    private void AssumeRole(KmsCallContext context, ActionParameters p, Utf8JsonWriter w)
    {
        using var credentials = ram.AssumeRole(context, p.Required("RoleArn"), p.Required("RoleSessionName"),
            p.OptionalInt("DurationSeconds", RamService.MinSessionSeconds, RamService.MaxSessionSeconds) ?? RamService.MaxSessionSeconds,
            p.Optional("Policy"), p.Optional("ExternalId"));
        w.WriteStartObject("AssumedRoleUser");
        w.WriteString("AssumedRoleId", credentials.AssumedRoleId);
        w.WriteString("Arn", credentials.Arn);
        w.WriteEndObject();
        w.WriteStartObject("Credentials");
        w.WriteString("AccessKeyId", credentials.AccessKeyId);
        w.WriteString("AccessKeySecret", credentials.Secret.Span);        // UTF-8 bytes straight from wiped memory
        w.WriteString("SecurityToken", credentials.SecurityToken.Span);
        w.WriteString("Expiration", RamService.FormatDate(credentials.Expiration));
        w.WriteEndObject();
    }

    private static void CallerIdentity(KmsPrincipal principal, Utf8JsonWriter w)
    {
        w.WriteString("AccountId", principal.AccountId);
        w.WriteString("PrincipalId", principal.PrincipalId);
        switch (principal.Type)
        {
            case PrincipalType.Root:
                w.WriteString("IdentityType", "Account");
                w.WriteString("Arn", $"acs:ram::{principal.AccountId}:root");
                break;
            case PrincipalType.RamUser:
                w.WriteString("IdentityType", "RAMUser");
                w.WriteString("UserId", principal.PrincipalId);
                w.WriteString("Arn", $"acs:ram::{principal.AccountId}:user/{principal.UserName}");
                break;
            default:
                var slash = principal.UserName.IndexOf('/', StringComparison.Ordinal);
                var role = slash < 0 ? principal.UserName : principal.UserName[..slash];
                w.WriteString("IdentityType", "AssumedRoleUser");
                w.WriteString("RoleId", principal.PrincipalId.Split(':')[0]);
                w.WriteString("Arn", slash < 0 ? RamService.RoleArn(principal.AccountId, role) : $"{RamService.RoleArn(principal.AccountId, role)}{principal.UserName[slash..]}");
                break;
        }
    }
}
