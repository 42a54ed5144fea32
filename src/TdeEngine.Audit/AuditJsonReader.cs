namespace TdeEngine.Audit;

/// <summary>Reads one line of the trail into an <see cref="AuditEvent"/>.</summary>
public static class AuditJsonReader
{
    public static AuditEvent Parse(string line) => AuditJson.Parse(line);
}
