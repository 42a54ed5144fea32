using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace TdeEngine.Cli.Tests;

public sealed class KmsCommandTests : IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-cli-test-" + Guid.NewGuid().ToString("N"));

    public KmsCommandTests() => Directory.CreateDirectory(_home);

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_home, recursive: true);
    }

    private JsonElement Ok(params string[] args)
    {
        var result = CliProcess.Run(_home, args);
        Assert.True(result.ExitCode == 0, $"tde {string.Join(' ', args)} exited {result.ExitCode}: {result.Stdout}{result.Stderr}");
        return JsonDocument.Parse(result.Stdout).RootElement.Clone();
    }

    [Fact]
    public void Help_lists_every_action_with_its_parameters()
    {
        var result = CliProcess.Run(_home, "kms", "--help");

        Assert.Equal(0, result.ExitCode);
        foreach (var action in new[] { "CreateKey", "GenerateDataKey", "ReEncrypt", "ScheduleKeyDeletion", "CreateKmsInstance", "TagResource" })
        {
            Assert.Contains(action, result.Stdout, StringComparison.Ordinal);
        }

        Assert.Contains("--PendingWindowInDays", result.Stdout, StringComparison.Ordinal);
        var one = CliProcess.Run(_home, "kms", "Decrypt", "--help");
        Assert.Equal(0, one.ExitCode);
        Assert.Contains("tde kms Decrypt --CiphertextBlob", one.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void A_round_trip_across_processes_keeps_state_and_refuses_a_disabled_key()
    {
        var keyId = Ok("kms", "CreateKey", "--Description", "cli").GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
        Ok("kms", "CreateAlias", "--AliasName", "alias/cli", "--KeyId", keyId);
        var dataKey = Ok("kms", "GenerateDataKey", "--KeyId", "alias/cli", "--EncryptionContext", "{\"db\":\"a\"}");
        var blob = dataKey.GetProperty("CiphertextBlob").GetString()!;

        var decrypted = Ok("kms", "Decrypt", "--CiphertextBlob", blob, "--EncryptionContext", "{\"db\":\"a\"}");
        Ok("kms", "DisableKey", "--KeyId", keyId);
        var refused = CliProcess.Run(_home, "kms", "Decrypt", "--CiphertextBlob", blob, "--EncryptionContext", "{\"db\":\"a\"}");

        Assert.Equal(keyId, dataKey.GetProperty("KeyId").GetString());
        Assert.Equal(dataKey.GetProperty("Plaintext").GetString(), decrypted.GetProperty("Plaintext").GetString());
        Assert.Equal(32, Convert.FromBase64String(decrypted.GetProperty("Plaintext").GetString()!).Length);
        Assert.Equal(1, refused.ExitCode);
        var error = JsonDocument.Parse(refused.Stdout).RootElement;
        Assert.Equal(["Code", "Message", "RequestId"], error.EnumerateObject().Select(p => p.Name));
        Assert.Equal("Rejected.Disabled", error.GetProperty("Code").GetString());
        Assert.Equal("Disabled", Ok("kms", "DescribeKey", "--KeyId", "alias/cli").GetProperty("KeyMetadata").GetProperty("KeyState").GetString());
    }

    [Fact]
    public void A_wrong_encryption_context_fails_with_InvalidCiphertext()
    {
        var blob = Ok("kms", "GenerateDataKey", "--KeyId", "alias/acs/rds", "--EncryptionContext", "{\"db\":\"a\"}").GetProperty("CiphertextBlob").GetString()!;

        var result = CliProcess.Run(_home, "kms", "Decrypt", "--CiphertextBlob", blob, "--EncryptionContext", "{\"db\":\"b\"}");

        Assert.Equal(1, result.ExitCode);
        Assert.Equal("InvalidCiphertext", JsonDocument.Parse(result.Stdout).RootElement.GetProperty("Code").GetString());
    }

    [Fact]
    public void Unknown_actions_and_bad_arguments_fail_clearly()
    {
        var unknown = CliProcess.Run(_home, "kms", "MakeCoffee");
        var noDashes = CliProcess.Run(_home, "kms", "DescribeKey", "KeyId", "x");
        var noValue = CliProcess.Run(_home, "kms", "DescribeKey", "--KeyId");
        var noCommand = CliProcess.Run(_home, "frobnicate");

        Assert.Equal(1, unknown.ExitCode);
        Assert.Equal("InvalidAction.NotFound", JsonDocument.Parse(unknown.Stdout).RootElement.GetProperty("Code").GetString());
        Assert.Equal(2, noDashes.ExitCode);
        Assert.Contains("--<Param>", noDashes.Stderr, StringComparison.Ordinal);
        Assert.Equal(2, noValue.ExitCode);
        Assert.Contains("needs a value", noValue.Stderr, StringComparison.Ordinal);
        Assert.Equal(2, noCommand.ExitCode);
    }

    [Fact]
    public void An_option_the_action_does_not_take_is_refused_before_anything_runs()
    {
        var bogus = CliProcess.Run(_home, "kms", "CreateKey", "--Description", "x", "--Bogus", "1");
        var typo = CliProcess.Run(_home, "kms", "GenerateDataKey", "--KeyId", "alias/none", "--EncryptionContex", "{\"db\":\"a\"}");
        var ramTypo = CliProcess.Run(_home, "ram", "CreateUser", "--Username", "alice");
        var keys = Ok("kms", "ListKeys");

        Assert.Equal(2, bogus.ExitCode);
        Assert.Contains("CreateKey does not take --Bogus. Usage: tde kms CreateKey [--Description D]", bogus.Stderr, StringComparison.Ordinal);
        Assert.Equal(2, typo.ExitCode);
        Assert.Contains("does not take --EncryptionContex. Did you mean --EncryptionContext?", typo.Stderr, StringComparison.Ordinal);
        Assert.Equal(2, ramTypo.ExitCode);
        Assert.Contains("CreateUser does not take --Username. Did you mean --UserName?", ramTypo.Stderr, StringComparison.Ordinal);
        // Nothing ran: no key was created, and no user.
        Assert.Equal(0, keys.GetProperty("TotalCount").GetInt32());
        Assert.Equal(0, CliProcess.Run(_home, "ram", "CreateUser", "--UserName", "alice").ExitCode);
    }

    [Fact]
    public void A_PKCS11_module_that_cannot_be_loaded_is_named_without_a_stack_trace()
    {
        var module = Path.Combine(_home, "no-such-module.so");
        var result = CliProcess.Run(_home, new Dictionary<string, string> { ["TDE_HSM_MODULE"] = module, ["TDE_HSM_PIN"] = "1234" }, "kms", "ListKeys");

        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith($"tde: Loading the PKCS#11 module failed with an error: '{module}' could not be loaded as a PKCS#11 module", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("Check TDE_HSM_MODULE", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Concurrent_processes_share_one_store_and_one_service_key()
    {
        var results = new CliProcess.Result[8];
        Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
            results[i] = i % 2 == 0
                ? CliProcess.Run(_home, "kms", "CreateKey", "--Description", $"p{i}")
                : CliProcess.Run(_home, "kms", "GenerateDataKeyWithoutPlaintext", "--KeyId", "alias/acs/ecs"));

        Assert.All(results, r => Assert.True(r.ExitCode == 0, r.Stdout + r.Stderr));
        var serviceKeys = results.Where((_, i) => i % 2 == 1)
            .Select(r => JsonDocument.Parse(r.Stdout).RootElement.GetProperty("KeyId").GetString()).Distinct().ToList();
        Assert.Single(serviceKeys);
        Assert.Equal(5, Ok("kms", "ListKeys").GetProperty("TotalCount").GetInt32());
    }

    [Fact]
    public void No_file_under_TDE_HOME_holds_a_data_key_the_CLI_printed()
    {
        var keyId = Ok("kms", "CreateKey").GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
        var printed = Enumerable.Range(0, 5)
            .Select(_ => Ok("kms", "GenerateDataKey", "--KeyId", keyId).GetProperty("Plaintext").GetString()!)
            .ToList();

        foreach (var file in Directory.GetFiles(_home, "*", SearchOption.AllDirectories))
        {
            var bytes = File.ReadAllBytes(file);
            var text = Encoding.ASCII.GetString(bytes);
            foreach (var base64 in printed)
            {
                Assert.DoesNotContain(base64, text, StringComparison.Ordinal);
                Assert.True(bytes.AsSpan().IndexOf(Convert.FromBase64String(base64)) < 0, $"{file} holds a data key");
            }
        }
    }

    [Fact]
    public void The_demo_runs_on_a_fresh_home()
    {
        var result = CliProcess.Run(_home, "demo");

        Assert.True(result.ExitCode == 0, result.Stdout + result.Stderr);
        Assert.Contains("Rejected.Disabled", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("[9]", result.Stdout, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(_home, "kms.db")));

        // The RDS scenario went through RAM and the audit trail as the RDS service role, and a second run works too.
        Assert.Contains("plaintext artist names found in the file: 0", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("7 events by the role. The trail is intact", result.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"(\d+) of \1 pages rewritten; the envelope now holds only DEK version 2", result.Stdout);
        Assert.Contains("the connection opened before it still reads and writes: 276 artists", result.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"online backup \(tde db backup\): \d+ pages, verified, its own DEK \(database id ([0-9a-f]{8})… against (?!\1)[0-9a-f]{8}…\), artist names in clear: 0", result.Stdout);

        // The ECS-style disk and the OSS-style bucket: ciphertext on disk, bound contexts, revocation, each as its service role.
        Assert.Contains("plaintext artist names found in the disk image: 0", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("attach the disk a second time: refused, Tde.DiskInUse", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("the file reads back identical; plaintext artist names in the snapshot: 0", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("attach the disk made from the snapshot: refused, Rejected.Disabled", result.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"PutObject README\.txt: 50 bytes, x-oss-server-side-encryption: AES256, key acs:kms:", result.Stdout);
        Assert.Matches(@"PutObject invoices/2026/11/inv-0042\.json: 148 bytes, x-oss-server-side-encryption: KMS, key acs:kms:", result.Stdout);
        Assert.Contains("plaintext artist names found in the object's file: 0", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("GetObject Range: bytes=0-39 -> {\"invoice\":\"INV-0042\",\"customer\":\"Led Ze", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("(a copied file): refused, Tde.InvalidParameter", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("HeadObject of it (no KMS call: the header names another object): refused, Tde.InvalidParameter", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("HeadObject: 148 bytes; ListObjects invoices/: invoices/2026/11/inv-0042.json\n", result.Stdout.ReplaceLineEndings("\n"), StringComparison.Ordinal);
        Assert.Contains("GetObject invoices/2026/11/inv-0042.json: refused, Rejected.Disabled", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("EnableKey: GetObject reads 148 characters again", result.Stdout, StringComparison.Ordinal);
        Assert.Matches(@"AliyunECSDiskEncryptDefaultRole +6 events, +2 refused", result.Stdout);
        Assert.Matches(@"AliyunServiceRoleForOSS +5 events, +1 refused", result.Stdout);

        // Key administration went through the gateway as the root too: who disabled which key is on record.
        Assert.Matches(@"the account's root \(key administration\) +22 events, +2 refused", result.Stdout);
        Assert.Matches(@"#\d+ \d\d:\d\d:\d\d root-account \d+  key [0-9a-f-]+  Forbidden\.ServiceKey", result.Stdout);
        Assert.Equal(4, System.Text.RegularExpressions.Regex.Matches(result.Stdout, @"#\d+ \d\d:\d\d:\d\d root-account \d+  key [0-9a-f-]+  OK").Count);
        // The demo signs the end of the trail before it verifies, so every event is covered by a signature.
        Assert.Matches(@"signed a checkpoint of the trail's end \(tde audit checkpoint\)\. The trail is intact: \d+ events, [1-9]\d* signed checkpoints?\.\r?\n", result.Stdout);

        var again = CliProcess.Run(_home, "demo");
        Assert.True(again.ExitCode == 0, again.Stdout + again.Stderr);
        // The first run's DEK rotation and backup went through the role too: their GenerateDataKeys and Decrypts are in the trail.
        Assert.Contains("30 events by the role. The trail is intact", again.Stdout, StringComparison.Ordinal);
        var lookup = JsonDocument.Parse(CliProcess.Run(_home, "audit", "LookupEvents", "--Principal", "AliyunRDSInstanceEncryptionDefaultRole/rds-demo-instance", "--json").Stdout);
        Assert.Contains(lookup.RootElement.GetProperty("Events").EnumerateArray(), e => e.TryGetProperty("errorCode", out var code) && code.GetString() == "Rejected.Disabled");
    }
}
