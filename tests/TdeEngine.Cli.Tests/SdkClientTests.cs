using System.Diagnostics;
using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace TdeEngine.Cli.Tests;

/// <summary>
/// The official Alibaba Cloud clients for Node.js (the RPC client @alicloud/pop-core, the Tea OpenAPI
/// core @alicloud/openapi-client with its default V3 signature, and the typed @alicloud/kms20160120;
/// pinned in tests/sdk-client/package-lock.json) against a real `tde kms serve` on 127.0.0.1, with
/// access keys made by `tde ram CreateAccessKey`.
/// </summary>
public sealed class SdkClientTests : IDisposable
{
    private readonly ServedHome _served = new("tde-sdk-");

    private string Home => _served.Home;

    public void Dispose() => _served.Dispose();

    [Fact]
    public void The_official_Alibaba_clients_drive_the_server()
    {
        var script = FindSdkScript();
        foreach (var package in new[] { "pop-core", "openapi-client", "kms20160120" })
        {
            Assert.True(Directory.Exists(Path.Combine(Path.GetDirectoryName(script)!, "node_modules", "@alicloud", package)),
                $"The SDK client @alicloud/{package} is not installed: run 'npm ci' in tests/sdk-client (test.sh does).");
        }
        var rootKey = Key(CliProcess.Run(Home, "ram", "CreateAccessKey"));
        Assert.Equal(0, CliProcess.Run(Home, "ram", "CreateUser", "--UserName", "sdkuser").ExitCode);
        var userKey = Key(CliProcess.Run(Home, "ram", "CreateAccessKey", "--UserName", "sdkuser"));
        var endpoint = _served.StartServer();

        (int ExitCode, string Output) RunScript(string path)
        {
            var node = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true };
            node.ArgumentList.Add(path);
            node.Environment["ENDPOINT"] = endpoint;
            node.Environment["ROOT_AK"] = rootKey.Id;
            node.Environment["ROOT_SK"] = rootKey.Secret;
            node.Environment["USER_NAME"] = "sdkuser";
            node.Environment["USER_AK"] = userKey.Id;
            node.Environment["USER_SK"] = userKey.Secret;
            using var run = Process.Start(node)!;
            var stderr = run.StandardError.ReadToEndAsync();
            var stdout = run.StandardOutput.ReadToEnd();
            run.WaitForExit();
            return (run.ExitCode, stdout + stderr.Result);
        }

        var (exitCode, output) = RunScript(script);

        Assert.True(exitCode == 0, output);
        foreach (var step in new[] { "CreateKey", "DescribeKey", "ListKeys", "CreateAlias", "GenerateDataKey", "Decrypt", "Encrypt", "ReEncrypt",
                     "CreateKeyVersion", "TagResource", "UserWithoutPolicyRefused", "UserAllowedAfterAttachPolicy", "AssumeRole", "RoleSessionUsesKeys",
                     "WrongSecurityTokenRefused", "SessionPolicyNarrowsRole", "ExternalIdRequiredByTrustPolicy", "DisableKeyThenDecryptRefused",
                     "ScheduleKeyDeletion", "WrongSignatureRefused", "UnknownAccessKeyRefused" })
        {
            Assert.Contains($"ok {step}\n", output, StringComparison.Ordinal);
        }

        // The Tea OpenAPI core (V3 signature) and the typed KMS client (EncryptionContext as a flattened map),
        // after the script above gave the user DescribeKey and Decrypt.
        var (teaExit, teaOutput) = RunScript(Path.Combine(Path.GetDirectoryName(script)!, "kms-tea-sdk-test.mjs"));
        Assert.True(teaExit == 0, teaOutput);
        foreach (var step in new[] { "TeaCreateKey", "TeaSignsWithV3", "TeaGenerateDataKey", "TeaDecryptWithFormBody", "TeaEncryptDescribeKey",
                     "TeaUserAllowedAndRefusedByPolicy", "TeaWrongSignatureRefused", "TeaRoleSessionWithSecurityToken",
                     "TypedCreateKeyDescribeKey", "TypedGenerateDataKeyWithContextMap", "EveryTeaRequestWasV3" })
        {
            Assert.Contains($"ok {step}\n", teaOutput, StringComparison.Ordinal);
        }

        // Every SDK call is in the audit trail, and the trail verifies.
        var verify = CliProcess.Run(Home, "audit", "verify");
        Assert.Equal(0, verify.ExitCode);
        var lookup = CliProcess.Run(Home, "audit", "LookupEvents", "--Principal", "sdkuser", "--json");
        var events = JsonDocument.Parse(lookup.Stdout).RootElement.GetProperty("Events");
        Assert.Contains(events.EnumerateArray(), e => e.GetProperty("errorCode").GetString() == "Forbidden.RAM");

        // The role session's calls are audited as the assumed role, with the STS access key.
        var session = JsonDocument.Parse(CliProcess.Run(Home, "audit", "LookupEvents", "--Principal", "SdkKeyUser/sdk-session", "--json").Stdout)
            .RootElement.GetProperty("Events").EnumerateArray().ToList();
        var generate = Assert.Single(session, e => e.GetProperty("eventName").GetString() == "GenerateDataKey");
        Assert.Equal("assumed-role", generate.GetProperty("userIdentity").GetProperty("type").GetString());
        Assert.StartsWith("STS.", generate.GetProperty("userIdentity").GetProperty("accessKeyId").GetString(), StringComparison.Ordinal);
        var assumes = JsonDocument.Parse(CliProcess.Run(Home, "audit", "LookupEvents", "--EventName", "AssumeRole", "--json").Stdout)
            .RootElement.GetProperty("Events").EnumerateArray().ToList();
        Assert.Equal(6, assumes.Count);   // sdk-session, sdk-narrow (session policy), sdk-bad (refused), no-id (refused), with-id, tea-session
        Assert.All(assumes, e => Assert.Equal("sts.aliyuncs.com", e.GetProperty("eventSource").GetString()));
        Assert.All(assumes, e => Assert.DoesNotContain("SecurityToken", e.GetRawText(), StringComparison.Ordinal));
        var narrowed = Assert.Single(assumes, e => e.GetProperty("requestParameters").GetProperty("RoleSessionName").GetString() == "sdk-narrow");
        Assert.Contains("kms:GenerateDataKey", narrowed.GetProperty("requestParameters").GetProperty("Policy").GetString(), StringComparison.Ordinal);
        Assert.Equal("InvalidParameter.PolicyGrammar",
            Assert.Single(assumes, e => e.GetProperty("requestParameters").GetProperty("RoleSessionName").GetString() == "sdk-bad").GetProperty("errorCode").GetString());

        // The typed client's flattened EncryptionContext map was read, bound and audited as the JSON object.
        var generated = JsonDocument.Parse(CliProcess.Run(Home, "audit", "LookupEvents", "--EventName", "GenerateDataKey", "--json").Stdout)
            .RootElement.GetProperty("Events").EnumerateArray().ToList();
        Assert.Contains(generated, e => e.GetProperty("requestParameters").TryGetProperty("EncryptionContext", out var context)
            && context.GetString() == "{\"db\":\"orders\",\"tenant\":\"typed\"}");

        // The narrowed session's Decrypt was refused by its session policy, and the event says so.
        var narrow = JsonDocument.Parse(CliProcess.Run(Home, "audit", "LookupEvents", "--Principal", "SdkKeyUser/sdk-narrow", "--json").Stdout)
            .RootElement.GetProperty("Events").EnumerateArray().ToList();
        var refusedDecrypt = Assert.Single(narrow, e => e.GetProperty("eventName").GetString() == "Decrypt");
        Assert.Equal("Forbidden.RAM", refusedDecrypt.GetProperty("errorCode").GetString());
        Assert.Equal("NotInSessionPolicy", refusedDecrypt.GetProperty("additionalEventData").GetProperty("decision").GetString());
    }

    private static (string Id, string Secret) Key(CliProcess.Result result)
    {
        Assert.Equal(0, result.ExitCode);
        var key = JsonDocument.Parse(result.Stdout).RootElement.GetProperty("AccessKey");
        return (key.GetProperty("AccessKeyId").GetString()!, key.GetProperty("AccessKeySecret").GetString()!);
    }

    private static string FindSdkScript()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "sdk-client", "kms-sdk-test.mjs");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException("tests/sdk-client/kms-sdk-test.mjs was not found above the test binaries.");
    }
}
