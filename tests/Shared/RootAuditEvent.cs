using TdeEngine.Audit;

namespace TdeEngine.Tests.Shared;

/// <summary>Audit events for trail tests: a call by the account's root, as the gateway records one. (Linked into the test projects that need it.)</summary>
internal static class RootAuditEvent
{
    /// <summary>An event before the trail sets its sequence and hashes.</summary>
    public static AuditEvent Create(string eventName, string keyId, DateTimeOffset time) => new()
    {
        EventId = Guid.NewGuid().ToString(),
        EventTime = time,
        EventName = eventName,
        EventSource = "kms.aliyuncs.com",
        ServiceName = "Kms",
        ApiVersion = "2016-01-20",
        AcsRegion = "cn-hangzhou",
        RequestId = Guid.NewGuid().ToString(),
        SourceIpAddress = "127.0.0.1",
        UserIdentity = new AuditIdentity("root-account", "1", "1", "root"),
        RequestParameters = new Dictionary<string, string> { ["KeyId"] = keyId },
    };
}
