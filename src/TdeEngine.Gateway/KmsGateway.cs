using System.Text.Json;
using TdeEngine.Audit;
using TdeEngine.Kms.Api;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Ram;
using TdeEngine.Ram.Api;
using TdeEngine.Ram.Policies;

namespace TdeEngine.Gateway;

/// <summary>
/// The single door to the KMS and RAM actions: each call is authorized by RAM (explicit deny,
/// allow, implicit deny; a refusal is HTTP 403 <c>Forbidden.RAM</c>), carried out, and recorded in
/// the audit trail, allowed or denied, succeeded or failed. The response is returned only after its
/// audit event is durable. The CLI and the server both call this class.
/// </summary>
public sealed class KmsGateway(KeyManagementService kms, RamService ram, IAuditSink audit)
{
    private static readonly HashSet<string> AuditedParameters = new(StringComparer.Ordinal)
    {
        "KeyId", "KeySpec", "NumberOfBytes", "EncryptionContext", "SourceEncryptionContext", "DestinationEncryptionContext",
        "DestinationKeyId", "AliasName", "Description", "Origin", "ProtectionLevel", "DKMSInstanceId", "KeyUsage",
        "EnableAutomaticRotation", "RotationInterval", "PendingWindowInDays", "ProtectedResourceArn", "EnableDeletionProtection",
        "DeletionProtectionDescription", "KeyVersionId", "Tags", "TagKeys", "PageNumber", "PageSize", "Filters", "ProductType",
        "KeyNum", "Spec", "UserName", "RoleName", "PolicyName", "PolicyType", "PolicyDocument", "DisplayName", "UserAccessKeyId",
        "Action", "Resource", "SourceIp", "WrappingAlgorithm", "WrappingKeySpec", "KeyMaterialExpireUnix", "RoleArn", "RoleSessionName",
        "DurationSeconds", "Policy", "ExternalId", "NewAssumeRolePolicyDocument", "NewDescription",
    };

    private static readonly Dictionary<string, IReadOnlyList<string>> NoConditions = new(StringComparer.Ordinal);

    /// <summary>The <c>additionalEventData</c> field that holds a server request's SignatureNonce.</summary>
    public const string SignatureNonceField = "signatureNonce";

    private readonly KmsApi _kmsApi = new(kms);
    private readonly RamApi _ramApi = new(ram);
    private readonly StsApi _stsApi = new(ram);

    /// <summary>A KMS action (2016-01-20), authorized and audited.</summary>
    public KmsApiResponse InvokeKms(KmsCallContext context, string action, IReadOnlyDictionary<string, string> parameters,
        bool indented = false, string? accessKeyId = null) =>
        Commit(ExecuteKms(context, action, parameters, indented, accessKeyId));

    /// <summary>As <see cref="InvokeKms"/>, waiting for the audit write without holding a thread.</summary>
    public Task<KmsApiResponse> InvokeKmsAsync(KmsCallContext context, string action, IReadOnlyDictionary<string, string> parameters,
        bool indented = false, string? accessKeyId = null) =>
        CommitAsync(ExecuteKms(context, action, parameters, indented, accessKeyId));

    private (KmsCallContext Context, KmsApiResponse Response, AuditEvent Event) ExecuteKms(KmsCallContext context, string action,
        IReadOnlyDictionary<string, string> parameters, bool indented, string? accessKeyId)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(parameters);
        var described = Describe(context, action, parameters);
        var targets = described.ConvertAll(target => target.Request);
        var (decision, denied) = Authorize(context, targets);
        var response = decision.Allowed
            ? _kmsApi.Invoke(context, action, parameters, indented)
            : ApiResponse.Error(context, Denied(action, described[denied].Shown, decision), indented);
        return (context, response, BuildEvent(context, "Kms", "kms.aliyuncs.com", "2016-01-20", action, parameters, response, decision, targets, accessKeyId, denied));
    }

    /// <summary>The ARN of key <paramref name="keyId"/> (an id, as KMS answers carry) in the caller's account.</summary>
    public string KeyArn(KmsCallContext context, string keyId)
    {
        ArgumentNullException.ThrowIfNull(context);
        return kms.KeyArn(context.AccountId, keyId);
    }

    /// <summary>A RAM action, authorized (<c>ram:*</c> policies) and audited.</summary>
    public KmsApiResponse InvokeRam(KmsCallContext context, string action, IReadOnlyDictionary<string, string> parameters,
        bool indented = false, string? accessKeyId = null) =>
        Commit(ExecuteRam(context, action, parameters, indented, accessKeyId));

    /// <summary>As <see cref="InvokeRam"/>, waiting for the audit write without holding a thread.</summary>
    public Task<KmsApiResponse> InvokeRamAsync(KmsCallContext context, string action, IReadOnlyDictionary<string, string> parameters,
        bool indented = false, string? accessKeyId = null) =>
        CommitAsync(ExecuteRam(context, action, parameters, indented, accessKeyId));

    private (KmsCallContext Context, KmsApiResponse Response, AuditEvent Event) ExecuteRam(KmsCallContext context, string action,
        IReadOnlyDictionary<string, string> parameters, bool indented, string? accessKeyId)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(parameters);
        List<AccessRequest> targets;
        try
        {
            targets = DescribeRam(context, action, parameters);
        }
        catch (KmsException e)
        {
            // The request names no resource to authorize (a role session managing "its own" access keys).
            var refused = ApiResponse.Error(context, e, indented);
            return (context, refused, BuildEvent(context, "Ram", "ram.aliyuncs.com", "2015-05-01", action, parameters, refused,
                new AccessDecision(false, "NotEvaluated"), [], accessKeyId));
        }

        var (decision, denied) = Authorize(context, targets);
        var response = decision.Allowed
            ? _ramApi.Invoke(context, action, parameters, indented)
            : ApiResponse.Error(context, Denied(action, targets[denied].Resource, decision, "ram"), indented);
        return (context, response, BuildEvent(context, "Ram", "ram.aliyuncs.com", "2015-05-01", action, parameters, response, decision, targets, accessKeyId, denied));
    }

    // What a RAM action touches, as Alibaba RAM authorizes it: acs:ram::ACCOUNT:user/NAME, role/NAME
    // (lower case, as role ARNs are) and policy/NAME; actions on no single entity (ListPolicies) take
    // acs:ram::ACCOUNT:*. A user is named as it was created, whatever the case in the request, so a
    // Deny on user/boss also holds for UserName=BOSS.
    private List<AccessRequest> DescribeRam(KmsCallContext context, string action, IReadOnlyDictionary<string, string> p)
    {
        var account = $"acs:ram::{context.AccountId}";
        string Value(string name) => p.TryGetValue(name, out var v) ? v : "";
        string User(string name) => $"{account}:user/{(name.Length == 0 ? name : ram.FindUserName(context.AccountId, name) ?? name)}";
        string Role(string name) => RamService.RoleArn(context.AccountId, name);
        string Policy(string name) => $"{account}:policy/{name}";

        List<string> resources = action switch
        {
            "CreateUser" => [User(Value("UserName"))],
            "CreateRole" or "UpdateRole" => [Role(Value("RoleName"))],
            // An empty UserName is no UserName, as the action reads it (ActionParameters.Optional).
            "CreateAccessKey" or "DeleteAccessKey" => [RamService.AccessKeyOwner(context, Value("UserName") is { Length: > 0 } u ? u : null) is { } owner
                ? User(owner) : $"{account}:root"],
            "CreatePolicy" => [Policy(Value("PolicyName"))],
            "AttachPolicyToUser" or "DetachPolicyFromUser" => [User(Value("UserName")), Policy(Value("PolicyName"))],
            "AttachPolicyToRole" or "DetachPolicyFromRole" => [Role(Value("RoleName")), Policy(Value("PolicyName"))],
            "SimulatePolicy" when Value("UserName").Length > 0 => [User(Value("UserName"))],
            "SimulatePolicy" when Value("RoleName").Length > 0 => [Role(Value("RoleName"))],
            // As Alibaba's RAM authorization table gives it (acs:ram:*:<account>:policy/*), so a policy written for it applies.
            "ListPolicies" => [Policy("*")],
            _ => [$"{account}:*"],
        };
        var conditions = CallerConditions(context);
        return resources.ConvertAll(resource => new AccessRequest("ram:" + action, resource, conditions));
    }

    // Every target must be allowed; the first refused one (its index) is named in the error.
    private (AccessDecision Decision, int Denied) Authorize(KmsCallContext context, List<AccessRequest> targets)
    {
        AccessDecision decision = new(true, "AccountRoot");
        for (var i = 0; i < targets.Count; i++)
        {
            decision = ram.Authorize(context.Principal, targets[i]);
            if (!decision.Allowed)
            {
                return (decision, i);
            }
        }

        return (decision, -1);
    }

    /// <summary>An STS action (2015-04-01), authorized (<c>sts:AssumeRole</c> on the role) and audited.</summary>
    public KmsApiResponse InvokeSts(KmsCallContext context, string action, IReadOnlyDictionary<string, string> parameters,
        bool indented = false, string? accessKeyId = null) =>
        Commit(ExecuteSts(context, action, parameters, indented, accessKeyId));

    /// <summary>As <see cref="InvokeSts"/>, waiting for the audit write without holding a thread.</summary>
    public Task<KmsApiResponse> InvokeStsAsync(KmsCallContext context, string action, IReadOnlyDictionary<string, string> parameters,
        bool indented = false, string? accessKeyId = null) =>
        CommitAsync(ExecuteSts(context, action, parameters, indented, accessKeyId));

    private (KmsCallContext Context, KmsApiResponse Response, AuditEvent Event) ExecuteSts(KmsCallContext context, string action,
        IReadOnlyDictionary<string, string> parameters, bool indented, string? accessKeyId)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(parameters);
        // Who am I needs no permission; assuming a role needs sts:AssumeRole on it (the trust policy is the role's side).
        // The role is authorized by the ARN of the role AssumeRole will resolve, not as spelled: role/ADMIN is role/admin.
        var resource = action == "AssumeRole" && parameters.TryGetValue("RoleArn", out var role)
            ? ram.CanonicalRoleArn(role) ?? role
            : $"acs:ram::{context.AccountId}:*";
        var target = new AccessRequest("sts:" + action, resource, CallerConditions(context));
        var decision = action == "GetCallerIdentity" ? new AccessDecision(true, "NoPermissionNeeded") : ram.Authorize(context.Principal, target);
        var response = decision.Allowed
            ? _stsApi.Invoke(context, action, parameters, indented)
            : ApiResponse.Error(context, Denied(action, resource, decision, "sts"), indented);
        return (context, response, BuildEvent(context, "Sts", "sts.aliyuncs.com", "2015-04-01", action, parameters, response, decision, [target], accessKeyId));
    }

    /// <summary>
    /// Records a request refused before it reached RAM (unknown access key, bad signature, replay,
    /// stale timestamp): the identity is the one it claimed.
    /// </summary>
    public async Task RecordRejectedAsync(string sourceIp, string? userAgent, string requestId, string action, string? accessKeyId,
        IReadOnlyDictionary<string, string> parameters, string errorCode, string errorMessage)
    {
        var claimed = new KmsCallContext(new KmsPrincipal(PrincipalType.Service, "", "", "unauthenticated"), sourceIp, requestId, userAgent);
        var error = ApiResponse.Error(claimed, new KmsException(errorCode, 400, errorMessage));
        using var response = await CommitAsync((claimed, error, BuildEvent(claimed, "Kms", "kms.aliyuncs.com", "2016-01-20", action, parameters, error,
            new AccessDecision(false, "Unauthenticated"), [], accessKeyId))).ConfigureAwait(false);
    }

    // Acknowledge the call only once its event is durable.
    private KmsApiResponse Commit((KmsCallContext Context, KmsApiResponse Response, AuditEvent Event) call)
    {
        try
        {
            audit.Append(call.Event);
            return call.Response;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return NotRecorded(call, e);
        }
    }

    private async Task<KmsApiResponse> CommitAsync((KmsCallContext Context, KmsApiResponse Response, AuditEvent Event) call)
    {
        try
        {
            await audit.AppendAsync(call.Event).ConfigureAwait(false);
            return call.Response;
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return NotRecorded(call, e);
        }
    }

    private static KmsApiResponse NotRecorded((KmsCallContext Context, KmsApiResponse Response, AuditEvent Event) call, Exception e)
    {
        call.Response.Dispose();
        return ApiResponse.Error(call.Context, new KmsException(KmsErrors.Codes.InternalFailure, 500,
            "The call could not be recorded in the audit trail, so it is not acknowledged. Check the disk under $TDE_HOME/audit.", e));
    }

    private AuditEvent BuildEvent(KmsCallContext context, string service, string source, string apiVersion, string action,
        IReadOnlyDictionary<string, string> parameters, KmsApiResponse response, AccessDecision decision, IReadOnlyList<AccessRequest> targets,
        string? accessKeyId, int deniedTarget = -1)
    {
        var additional = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["decision"] = decision.Allowed ? "Allow" : decision.Reason,
            // The resource the decision was about: the refused one, or the call's first.
            ["resource"] = targets.Count > 0 ? targets[Math.Max(deniedTarget, 0)].Resource : "",
        };
        if (decision.PolicyName is not null)
        {
            additional["matchedPolicy"] = $"{decision.PolicyName}#{decision.StatementIndex}";
        }

        if (context.SignatureNonce is { } nonce)
        {
            // Durable before the answer is sent: a restarted server reads it back to refuse replays.
            additional[SignatureNonceField] = nonce;
        }

        if (response.IsSuccess)
        {
            ReadKeyFields(response.Body, additional);
        }

        // Failed and denied calls still name the key they were about, resolved before the call: the
        // call's first target (the key a ReEncrypt decrypts under, the key an UpdateAlias points
        // to), so a lookup by that key finds them whatever target was refused.
        var primary = targets.Count > 0 ? targets[0].Resource : "";
        var keyMarker = primary.IndexOf(":key/", StringComparison.Ordinal);
        if (!additional.ContainsKey("keyId") && keyMarker >= 0 && !primary.EndsWith('*'))
        {
            additional["keyId"] = primary[(keyMarker + 5)..];
        }

        var principal = context.Principal;
        return new AuditEvent
        {
            EventId = Uuid.NewV4(),
            EventTime = kms.Options.TimeProvider.GetUtcNow(),
            EventName = action,
            EventSource = source,
            ServiceName = service,
            ApiVersion = apiVersion,
            AcsRegion = kms.RegionId,
            RequestId = context.RequestId,
            SourceIpAddress = context.SourceIp,
            UserAgent = context.UserAgent,
            UserIdentity = new AuditIdentity(principal.Type switch
            {
                PrincipalType.Root => "root-account",
                PrincipalType.RamUser => "ram-user",
                PrincipalType.AssumedRole => "assumed-role",
                _ when principal.UserName == "unauthenticated" => "unknown",
                _ => "service",
            }, principal.AccountId, principal.PrincipalId, principal.UserName, accessKeyId),
            RequestParameters = Audited(parameters),
            ErrorCode = response.ErrorCode,
            ErrorMessage = response.ErrorMessage,
            AdditionalEventData = additional,
        };
    }

    // Only parameters known to be safe to record (never plaintext, data keys, blobs or secrets).
    private static Dictionary<string, string> Audited(IReadOnlyDictionary<string, string> parameters)
    {
        var audited = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in parameters)
        {
            if (AuditedParameters.Contains(name))
            {
                audited[name] = value;
            }
        }

        return audited;
    }

    // What the call touches, for RAM: the action and resource, and the condition keys of the call;
    // with each, the resource as a refusal names it. A key the caller reached through an alias is
    // named by that alias, not by its id: a caller refused on the key may not be allowed to learn
    // which key the alias points to (the audit event records the key).
    private List<(AccessRequest Request, string Shown)> Describe(KmsCallContext context, string action, IReadOnlyDictionary<string, string> p)
    {
        var ramAction = "kms:" + action;
        var scope = $"acs:kms:{kms.RegionId}:{context.AccountId}";
        string Value(string name) => p.TryGetValue(name, out var v) ? v : "";

        switch (action)
        {
            case "Decrypt":
                return [Request(ramAction, KeyOfBlob(Value("CiphertextBlob"), scope, context), context, Value("EncryptionContext"))];
            case "ReEncrypt":
                return
                [
                    Request(ramAction, KeyOfBlob(Value("CiphertextBlob"), scope, context), context, Value("SourceEncryptionContext")),
                    Request(ramAction, KeyArn(context, Value("DestinationKeyId"), scope), context, Value("DestinationEncryptionContext")),
                ];
            // As Alibaba KMS: an alias change needs permission on the alias and on every key it touches,
            // the key it will point at and the key it points at now (or UpdateAlias could repoint any alias).
            case "CreateAlias":
                return [Request(ramAction, KeyArn(context, Value("KeyId"), scope), context, ""), Request(ramAction, $"{scope}:{Value("AliasName")}", context, "")];
            case "UpdateAlias":
            case "DeleteAlias":
            {
                List<(AccessRequest, string)> targets = action == "UpdateAlias" ? [Request(ramAction, KeyArn(context, Value("KeyId"), scope), context, "")] : [];
                targets.Add(Request(ramAction, $"{scope}:{Value("AliasName")}", context, ""));
                if (CurrentKeyOf(context, Value("AliasName"), scope) is { } current)
                {
                    targets.Add(Request(ramAction, current, context, ""));
                }

                return targets;
            }

            case "SetDeletionProtection":
            {
                // Authorized on the key the ARN names, with its tags. Anything but a key id after key/
                // (an alias, a nested ARN) is authorized as given; the action refuses it.
                var arn = Value("ProtectedResourceArn");
                var marker = arn.IndexOf(":key/", StringComparison.Ordinal);
                var id = marker < 0 ? "" : arn[(marker + 5)..];
                var isKeyId = id.Length > 0 && id.All(ch => char.IsAsciiLetterOrDigit(ch) || ch == '-');
                return [Request(ramAction, isKeyId ? KeyArn(context, arn, scope) : (arn, null, arn), context, "")];
            }

            default:
                var keyId = Value("KeyId");
                var target = keyId.Length > 0 ? KeyArn(context, keyId, scope) : ($"{scope}:key", null, $"{scope}:key");
                return [Request(ramAction, target, context, Value("EncryptionContext"))];
        }
    }

    private (AccessRequest, string Shown) Request(string action, (string Arn, string? KeyId, string Shown) resource, KmsCallContext context, string encryptionContext)
    {
        if (context.Principal.Type == PrincipalType.Root)
        {
            // The account root is never evaluated against policies: no condition keys to gather.
            return (new AccessRequest(action, resource.Arn, NoConditions), resource.Shown);
        }

        var conditions = CallerConditions(context);
        try
        {
            foreach (var pair in EncryptionContext.Parse(encryptionContext).Pairs)
            {
                // Condition keys ignore case, context keys do not: {"Tenant":"a","tenant":"b"} gives
                // kms:EncryptionContext:Tenant both values, and conditions check every one of them.
                var name = "kms:EncryptionContext:" + pair.Key;
                conditions[name] = conditions.TryGetValue(name, out var values) ? [.. values, pair.Value] : [pair.Value];
            }
        }
        catch (KmsException)
        {
            // A malformed context is the action's error to report; it adds no condition keys.
        }

        if (resource.KeyId is not null && context.Principal.Type != PrincipalType.Root)
        {
            foreach (var tag in kms.ListResourceTags(context, resource.KeyId))
            {
                // Tag keys are case-sensitive (Env and env are two tags), condition keys are not: both
                // values go to kms:tag/env, as encryption-context keys do, so neither hides the other.
                var name = "kms:tag/" + tag.TagKey;
                conditions[name] = conditions.TryGetValue(name, out var values) ? [.. values, tag.TagValue] : [tag.TagValue];
            }
        }

        return (new AccessRequest(action, resource.Arn, conditions), resource.Shown);
    }

    private (AccessRequest, string Shown) Request(string action, string arn, KmsCallContext context, string encryptionContext) =>
        Request(action, (arn, null, arn), context, encryptionContext);

    private (string Arn, string? KeyId, string Shown) KeyArn(KmsCallContext context, string keyId, string scope)
    {
        // An alias, as a name or an ARN (acs:kms:REGION:ACCOUNT:alias/NAME).
        var alias = keyId.StartsWith("alias/", StringComparison.Ordinal) ? $"{scope}:{keyId}"
            : keyId.StartsWith("acs:", StringComparison.Ordinal) && keyId.Contains(":alias/", StringComparison.Ordinal) ? keyId : null;
        try
        {
            var key = kms.DescribeKey(context, keyId);
            // The key's ARN only when the caller named the key itself (its id or ARN); any other name
            // that resolved (an alias, an alias ARN, an ARN like key/alias/NAME) is named as given.
            var namedTheKey = alias is null && (keyId == key.KeyId || keyId == key.Arn);
            return (key.Arn, key.KeyId, namedTheKey ? key.Arn : $"the key that {alias ?? keyId} points to");
        }
        catch (KmsException)
        {
            // Not resolvable (yet): authorize against the name given; the action reports the real error.
            var named = alias ?? (keyId.StartsWith("acs:", StringComparison.Ordinal) ? keyId : $"{scope}:key/{keyId}");
            return (named, null, named);
        }
    }

    // The key an alias points at now, or null when there is no such alias (the action reports it).
    private (string Arn, string? KeyId, string Shown)? CurrentKeyOf(KmsCallContext context, string aliasName, string scope)
    {
        if (!aliasName.StartsWith("alias/", StringComparison.Ordinal))
        {
            return null;
        }

        try
        {
            var key = kms.DescribeKey(context, aliasName);
            return (key.Arn, key.KeyId, $"the key that {scope}:{aliasName} points to now");
        }
        catch (KmsException)
        {
            return null;
        }
    }

    private (string Arn, string? KeyId, string Shown) KeyOfBlob(string base64, string scope, KmsCallContext context)
    {
        try
        {
            var header = CiphertextBlob.ReadHeader(Convert.FromBase64String(base64));
            return KeyArn(context, header.KeyId, scope);
        }
        catch (Exception e) when (e is FormatException or KmsException)
        {
            return ($"{scope}:key/*", null, $"{scope}:key/*");
        }
    }

    // The condition keys every call has: where it comes from and whether over a secure channel.
    private static Dictionary<string, IReadOnlyList<string>> CallerConditions(KmsCallContext context) =>
        new(StringComparer.OrdinalIgnoreCase)
        {
            ["acs:SourceIp"] = [context.SourceIp],
            ["acs:SecureTransport"] = [context.SecureTransport ? "true" : "false"],
        };

    private static KmsException Denied(string action, string resource, AccessDecision decision, string service = "kms") =>
        new("Forbidden.RAM", 403, decision.Reason == "ExplicitDeny"
            ? $"You are not authorized to perform {service}:{action} on {resource}: denied by statement {decision.StatementIndex} of policy '{decision.PolicyName}'."
            : decision.Reason == RamService.NotInSessionPolicy
            ? $"You are not authorized to perform {service}:{action} on {resource}: the role allows it, but the session policy given to AssumeRole does not."
            : $"You are not authorized to perform {service}:{action} on {resource}: no attached policy allows it. Attach a policy with AttachPolicyToUser or AttachPolicyToRole.");

    // KeyId and KeyVersionId of the response, read without materialising any other value (the body may hold a data key).
    private static void ReadKeyFields(ReadOnlySpan<byte> body, Dictionary<string, string> into)
    {
        var reader = new Utf8JsonReader(body);
        var depth = 0;
        while (reader.Read())
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.StartObject:
                case JsonTokenType.StartArray:
                    depth++;
                    break;
                case JsonTokenType.EndObject:
                case JsonTokenType.EndArray:
                    depth--;
                    break;
                case JsonTokenType.PropertyName when depth <= 2 && (reader.ValueTextEquals("KeyId"u8) || reader.ValueTextEquals("KeyVersionId"u8)):
                    var name = reader.ValueTextEquals("KeyId"u8) ? "keyId" : "keyVersionId";
                    if (reader.Read() && reader.TokenType == JsonTokenType.String && !into.ContainsKey(name))
                    {
                        into[name] = reader.GetString()!;
                    }

                    break;
            }
        }
    }
}
