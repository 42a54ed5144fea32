using TdeEngine.Audit;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Tests.Shared;

namespace TdeEngine.Cli.Tests;

/// <summary><c>tde audit prune</c> and the segment size setting, through the real binary.</summary>
public sealed class AuditCommandTests : IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-cli-audit-" + Guid.NewGuid().ToString("N"));

    public AuditCommandTests() => Directory.CreateDirectory(_home);

    public void Dispose() => Directory.Delete(_home, recursive: true);

    private static AuditEvent Event(int i, DateTimeOffset time) => RootAuditEvent.Create("Decrypt", "key-" + i, time);

    [Fact]
    public void Prune_removes_old_segments_and_verify_reports_the_cut()
    {
        Assert.Equal(0, CliProcess.Run(_home, "kms", "ListKeys").ExitCode);   // the CLI makes the home and its root key

        // A year of old events in small segments, written by the library on the CLI's home, then recent ones.
        using (var root = FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key")))
        using (var trail = AuditTrail.Open(_home, root, segmentBytes: 4096))
        {
            var old = new DateTimeOffset(2025, 1, 1, 0, 0, 0, TimeSpan.Zero);
            for (var i = 0; i < 30; i++)
            {
                trail.Append(Event(i, old.AddDays(i)));
            }

            trail.Append(Event(30, DateTimeOffset.UtcNow));
        }

        var nothing = CliProcess.Run(_home, "audit", "prune", "--Before", "2024-01-01T00:00:00Z");
        Assert.Equal(0, nothing.ExitCode);
        Assert.Contains("nothing was pruned", nothing.Stdout, StringComparison.Ordinal);

        var pruned = CliProcess.Run(_home, "audit", "prune", "--Before", "2026-01-01T00:00:00Z");
        Assert.True(pruned.ExitCode == 0, pruned.Stdout + pruned.Stderr);
        Assert.Contains("Pruned ", pruned.Stdout, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_home, "audit", "trail-000000000001.jsonl")));

        var verify = CliProcess.Run(_home, "audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.Stdout + verify.Stderr);
        Assert.Contains("were pruned", verify.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_prune_arguments_and_a_bad_segment_size_fail_clearly()
    {
        var missing = CliProcess.Run(_home, "audit", "prune");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("--Before", missing.Stderr, StringComparison.Ordinal);

        var size = CliProcess.Run(_home, new Dictionary<string, string> { ["TDE_AUDIT_SEGMENT_MB"] = "lots" }, "audit", "verify");
        Assert.Equal(2, size.ExitCode);
        Assert.Contains("TDE_AUDIT_SEGMENT_MB", size.Stderr, StringComparison.Ordinal);
    }
}
