namespace TdeEngine.Audit;

/// <summary>Where the gateway sends audit events. <see cref="AuditTrail"/> is the production sink.</summary>
public interface IAuditSink
{
    /// <summary>Appends an event; returns once it is durable.</summary>
    AuditEvent Append(AuditEvent auditEvent);

    /// <summary>Appends an event; the task completes once it is durable.</summary>
    Task<AuditEvent> AppendAsync(AuditEvent auditEvent);
}
