using System.Text;
using System.Text.Json;
using TdeEngine.Audit;
using TdeEngine.Kms.Api;
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
    public async Task A_running_server_seals_segments_that_the_CLI_prunes_meanwhile()
    {
        using var served = new ServedHome("tde-cli-audit-serve-");
        var key = JsonDocument.Parse(CliProcess.Run(served.Home, "ram", "CreateAccessKey").Stdout).RootElement.GetProperty("AccessKey");
        var (id, secret) = (key.GetProperty("AccessKeyId").GetString()!, Encoding.UTF8.GetBytes(key.GetProperty("AccessKeySecret").GetString()!));
        var endpoint = new Uri(served.StartServer(new Dictionary<string, string> { ["TDE_AUDIT_SEGMENT_MB"] = "1" }));
        var audit = Path.Combine(served.Home, "audit");

        async Task Calls(int count)
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (_, token) =>
            {
                using var client = new HttpClient { BaseAddress = endpoint };
                var form = new Dictionary<string, string>(StringComparer.Ordinal);
                RpcSignature.SignRequest(form, "ListKeys", "2016-01-20", id, secret);
                using var answer = await client.PostAsync("/", new FormUrlEncodedContent(form), token);
                Assert.True(answer.IsSuccessStatusCode, await answer.Content.ReadAsStringAsync(token));
            });
        }

        // Over 1 MiB of events: the server seals at least one segment.
        await Calls(2500);
        var segments = Directory.GetFiles(audit, "trail-*.jsonl");
        Assert.NotEmpty(segments);

        // The CLI prunes while the server keeps answering (and appending).
        var traffic = Calls(600);
        var pruned = CliProcess.Run(served.Home, "audit", "prune", "--Before", DateTimeOffset.UtcNow.AddMinutes(1).ToString("O"));
        await traffic;
        Assert.True(pruned.ExitCode == 0, pruned.Stdout + pruned.Stderr);
        Assert.Contains("Pruned ", pruned.Stdout, StringComparison.Ordinal);
        Assert.All(segments, s => Assert.False(File.Exists(s)));

        await Calls(100);
        var verify = CliProcess.Run(served.Home, "audit", "verify");
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
