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

    private static void NoStackTrace(CliProcess.Result result) =>
        Assert.DoesNotContain("   at ", result.Stdout + result.Stderr, StringComparison.Ordinal);

    [Theory]
    [InlineData("--MaxResults must be a whole number from 1 to 50", "LookupEvents", "--MaxResults", "abc")]
    [InlineData("--MaxResults must be a whole number from 1 to 50", "LookupEvents", "--MaxResults", "0")]
    [InlineData("--MaxResults must be a whole number from 1 to 50", "LookupEvents", "--MaxResults", "51")]
    [InlineData("--StartTime must be a time in ISO 8601", "LookupEvents", "--StartTime", "yesterday")]
    [InlineData("--EndTime is before --StartTime", "LookupEvents", "--StartTime", "2026-02-01T00:00:00Z", "--EndTime", "2026-01-01T00:00:00Z")]
    [InlineData("unknown option '--Keyid'", "LookupEvents", "--Keyid", "alias/orders")]
    [InlineData("--NextToken must be a NextToken printed by an earlier", "LookupEvents", "--NextToken", "garbage")]
    [InlineData("unknown option '--json'", "verify", "--json")]
    [InlineData("unknown 'tde audit' command 'frobnicate'", "frobnicate")]
    [InlineData("tde audit export needs --out FILE", "export")]
    public void Usage_mistakes_exit_2_with_one_message_before_anything_is_created(string message, params string[] args)
    {
        var result = CliProcess.Run(_home, ["audit", .. args]);

        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith($"tde: {message}", result.Stderr, StringComparison.Ordinal);
        NoStackTrace(result);
        Assert.Empty(Directory.GetFileSystemEntries(_home));   // no root key, key store or trail was created
    }

    [Theory]
    [InlineData("abc")]
    [InlineData("99999")]
    public void A_bad_server_port_is_a_usage_error(string port)
    {
        var result = CliProcess.Run(_home, "kms", "serve", "--port", port);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains($"--port must be a TCP port from 0 (any free port) to 65535, not '{port}'", result.Stderr, StringComparison.Ordinal);
        NoStackTrace(result);
    }

    [Fact]
    public void Export_to_a_missing_directory_fails_with_one_line()
    {
        var result = CliProcess.Run(_home, "audit", "export", "--out", Path.Combine(_home, "no", "such", "dir", "trail.jsonl"));

        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("Error: Tde.Failed: ", result.Stderr, StringComparison.Ordinal);
        Assert.Single(result.Stderr.TrimEnd().Split('\n'));
        NoStackTrace(result);
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("{\"sequence\":1,\"hash\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"time\":\"t\",\"mac\":\"abc\"}")]
    public void Verify_reports_a_malformed_checkpoint_line_as_an_altered_file(string record)
    {
        Assert.Equal(0, CliProcess.Run(_home, "kms", "ListKeys").ExitCode);
        File.AppendAllText(Path.Combine(_home, "audit", "checkpoints.jsonl"), record + "\n");

        var result = CliProcess.Run(_home, "audit", "verify");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("of checkpoints.jsonl is not a signed record: the checkpoint file was altered.", result.Stderr, StringComparison.Ordinal);
        NoStackTrace(result);
    }

    [Fact]
    public void Each_command_that_made_calls_signs_them_on_exit_so_cutting_them_is_caught()
    {
        Assert.Equal(0, CliProcess.Run(_home, "kms", "ListKeys").ExitCode);
        Assert.Equal(0, CliProcess.Run(_home, "kms", "ListKeys").ExitCode);
        var trail = Path.Combine(_home, "audit", "trail.jsonl");
        File.WriteAllText(trail, File.ReadAllLines(trail)[0] + "\n");

        var result = CliProcess.Run(_home, "audit", "verify");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("A signed checkpoint covers event 2, but the trail ends at event 1: events were cut from the end.", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unfinished_last_line_blocks_nothing_and_is_set_aside()
    {
        Assert.Equal(0, CliProcess.Run(_home, "kms", "ListKeys").ExitCode);
        var trail = Path.Combine(_home, "audit", "trail.jsonl");
        File.AppendAllText(trail, "{\"eventSequence\":2,\"eventId\":\"abc");

        var verify = CliProcess.Run(_home, "audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.Stdout + verify.Stderr);
        Assert.Contains("unfinished last line", verify.Stdout, StringComparison.Ordinal);

        var lookup = CliProcess.Run(_home, "audit", "LookupEvents");
        Assert.True(lookup.ExitCode == 0, lookup.Stdout + lookup.Stderr);
        Assert.Contains("#1 ", lookup.Stdout, StringComparison.Ordinal);

        var checkpoint = CliProcess.Run(_home, "audit", "checkpoint");
        Assert.True(checkpoint.ExitCode == 0, checkpoint.Stdout + checkpoint.Stderr);
        Assert.StartsWith("{\"sequence\":1,", checkpoint.Stdout, StringComparison.Ordinal);

        var call = CliProcess.Run(_home, "kms", "ListKeys");
        Assert.True(call.ExitCode == 0, call.Stdout + call.Stderr);
        Assert.Single(Directory.GetFiles(Path.Combine(_home, "audit"), "trail.torn-*"));
        Assert.Equal(0, CliProcess.Run(_home, "audit", "verify").ExitCode);
    }

    [Fact]
    public void LookupEvents_pages_back_in_time_with_NextToken()
    {
        Assert.Equal(0, CliProcess.Run(_home, "kms", "ListKeys").ExitCode);   // event 1
        using (var root = FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key")))
        using (var trail = AuditTrail.Open(_home, root))
        {
            for (var i = 0; i < 6; i++)
            {
                trail.Append(Event(i, DateTimeOffset.UtcNow));   // events 2 to 7
            }
        }

        List<long> Page(string? token, out string next)
        {
            string[] args = token is null ? ["audit", "LookupEvents", "--MaxResults", "3", "--json"] : ["audit", "LookupEvents", "--MaxResults", "3", "--json", "--NextToken", token];
            var result = CliProcess.Run(_home, args);
            Assert.True(result.ExitCode == 0, result.Stdout + result.Stderr);
            var body = JsonDocument.Parse(result.Stdout).RootElement;
            next = body.GetProperty("NextToken").GetString()!;
            return body.GetProperty("Events").EnumerateArray().Select(e => e.GetProperty("eventSequence").GetInt64()).ToList();
        }

        Assert.Equal([5L, 6, 7], Page(null, out var token));
        Assert.NotEqual("", token);
        Assert.Equal([2L, 3, 4], Page(token, out token));
        Assert.Equal([1L], Page(token, out token));
        Assert.Equal("", token);

        var text = CliProcess.Run(_home, "audit", "LookupEvents", "--MaxResults", "6");
        Assert.Contains("NextToken: ", text.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void LookupEvents_by_alias_finds_the_calls_that_named_the_key_by_id()
    {
        var keyId = JsonDocument.Parse(CliProcess.Run(_home, "kms", "CreateKey").Stdout).RootElement.GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
        Assert.Equal(0, CliProcess.Run(_home, "kms", "CreateAlias", "--AliasName", "alias/orders", "--KeyId", keyId).ExitCode);
        Assert.Equal(0, CliProcess.Run(_home, "kms", "Encrypt", "--KeyId", keyId, "--Plaintext", "aGk=").ExitCode);
        Assert.Equal(0, CliProcess.Run(_home, "kms", "ListKeys").ExitCode);

        var result = CliProcess.Run(_home, "audit", "LookupEvents", "--KeyId", "alias/orders", "--json");

        Assert.True(result.ExitCode == 0, result.Stdout + result.Stderr);
        var names = JsonDocument.Parse(result.Stdout).RootElement.GetProperty("Events").EnumerateArray().Select(e => e.GetProperty("eventName").GetString()).ToList();
        Assert.Contains("Encrypt", names);
        Assert.Contains("CreateAlias", names);
        Assert.DoesNotContain("ListKeys", names);
    }
}
