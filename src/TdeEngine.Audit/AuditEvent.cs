namespace TdeEngine.Audit;

/// <summary>The identity that made a call, as ActionTrail's <c>userIdentity</c>.</summary>
public sealed record AuditIdentity(string Type, string AccountId, string PrincipalId, string UserName, string? AccessKeyId = null);

/// <summary>
/// One API call, allowed or denied, succeeded or failed, in ActionTrail's shape. It never holds
/// plaintext, data keys or secrets: request parameters are filtered to a known-safe list.
/// </summary>
public sealed record AuditEvent
{
    public required string EventId { get; init; }
    public required DateTimeOffset EventTime { get; init; }
    public required string EventName { get; init; }
    public required string EventSource { get; init; }
    public required string ServiceName { get; init; }
    public required string ApiVersion { get; init; }
    public required string AcsRegion { get; init; }
    public required string RequestId { get; init; }
    public required string SourceIpAddress { get; init; }
    public string? UserAgent { get; init; }
    public required AuditIdentity UserIdentity { get; init; }
    public required IReadOnlyDictionary<string, string> RequestParameters { get; init; }
    public string? ErrorCode { get; init; }
    public string? ErrorMessage { get; init; }

    /// <summary>Key id, key version used, access decision and the policy that decided.</summary>
    public IReadOnlyDictionary<string, string> AdditionalEventData { get; init; } = new Dictionary<string, string>();

    /// <summary>Position in the trail (1-based), set when appended.</summary>
    public long EventSequence { get; init; }

    /// <summary>Hash of the previous event (64 zeros for the first), set when appended.</summary>
    public string PreviousHash { get; init; } = "";

    /// <summary>SHA-256 over the event with <see cref="PreviousHash"/>, set when appended.</summary>
    public string Hash { get; init; } = "";
}
