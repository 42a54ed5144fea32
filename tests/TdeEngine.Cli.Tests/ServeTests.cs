using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms.Api;

namespace TdeEngine.Cli.Tests;

/// <summary>
/// `tde kms serve` as a user runs it: a child process on 127.0.0.1, with its socket completions
/// inline on the socket engine's threads. A slow action must not hold those threads.
/// </summary>
public sealed class ServeTests : IDisposable
{
    private readonly ServedHome _served = new("tde-serve-");

    private string Home => _served.Home;

    public void Dispose() => _served.Dispose();

    [Fact]
    public async Task A_call_blocked_on_the_key_store_does_not_stall_other_connections()
    {
        var key = JsonDocument.Parse(CliProcess.Run(Home, "ram", "CreateAccessKey").Stdout).RootElement.GetProperty("AccessKey");
        var (id, secret) = (key.GetProperty("AccessKeyId").GetString()!, Encoding.UTF8.GetBytes(key.GetProperty("AccessKeySecret").GetString()!));
        Assert.Equal(0, CliProcess.Run(Home, "kms", "ListKeys").ExitCode);   // the key store exists
        var endpoint = new Uri(_served.StartServer());
        using var slowClient = new HttpClient { BaseAddress = endpoint, Timeout = TimeSpan.FromSeconds(60) };

        // Another process holds the key store's write lock: CreateKey waits for it (busy timeout).
        await using var holder = new SqliteConnection($"Data Source={Path.Combine(Home, "kms.db")};Pooling=False");
        await holder.OpenAsync();
        await using (var begin = holder.CreateCommand())
        {
            begin.CommandText = "BEGIN IMMEDIATE";
            await begin.ExecuteNonQueryAsync();
        }

        var blocked = slowClient.PostAsync("/", new FormUrlEncodedContent(Signed("CreateKey", id, secret)));
        await Task.Delay(500);
        Assert.False(blocked.IsCompleted, "CreateKey should be waiting for the key store's lock.");

        // Meanwhile other connections (spread over the socket engine's threads) are served at once.
        var watch = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, 16).Select(async _ =>
        {
            using var other = new HttpClient { BaseAddress = endpoint, Timeout = TimeSpan.FromSeconds(10) };
            Assert.Equal("ok", await other.GetStringAsync("/healthz"));
            using var listed = await other.PostAsync("/", new FormUrlEncodedContent(Signed("ListKeys", id, secret)));
            Assert.True(listed.IsSuccessStatusCode, await listed.Content.ReadAsStringAsync());
        }));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"16 connections took {watch.Elapsed} while another request waited for the key store");

        Assert.False(blocked.IsCompleted);
        await using (var rollback = holder.CreateCommand())
        {
            rollback.CommandText = "ROLLBACK";
            await rollback.ExecuteNonQueryAsync();
        }

        using var created = await blocked;
        var body = await created.Content.ReadAsStringAsync();
        Assert.True(created.IsSuccessStatusCode, body);
        Assert.Equal("Enabled", JsonDocument.Parse(body).RootElement.GetProperty("KeyMetadata").GetProperty("KeyState").GetString());
    }

    // The audit promise: a call is answered only once its event is in the trail. SIGKILL the server
    // while 16 clients are mid-request; every call that got an answer must be in the trail, the
    // trail must verify, and a restarted server must refuse the answered requests as replays.
    [Fact]
    public async Task Every_answered_call_is_in_the_trail_after_a_SIGKILL_and_cannot_be_replayed()
    {
        var key = JsonDocument.Parse(CliProcess.Run(Home, "ram", "CreateAccessKey").Stdout).RootElement.GetProperty("AccessKey");
        var (id, secret) = (key.GetProperty("AccessKeyId").GetString()!, Encoding.UTF8.GetBytes(key.GetProperty("AccessKeySecret").GetString()!));
        var keyId = JsonDocument.Parse(CliProcess.Run(Home, "kms", "CreateKey").Stdout).RootElement.GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
        var endpoint = new Uri(_served.StartServer());

        var answered = new System.Collections.Concurrent.ConcurrentBag<(string RequestId, Dictionary<string, string> Form)>();
        using var stop = new CancellationTokenSource();
        var clients = Enumerable.Range(0, 16).Select(_ => Task.Run(async () =>
        {
            using var client = new HttpClient { BaseAddress = endpoint, Timeout = TimeSpan.FromSeconds(30) };
            while (true)
            {
                var form = Signed("GenerateDataKey", id, secret, ("KeyId", keyId), ("NumberOfBytes", "32"));
                try
                {
                    using var response = await client.PostAsync("/", new FormUrlEncodedContent(form));
                    var body = await response.Content.ReadAsStringAsync();
                    Assert.True(response.IsSuccessStatusCode, body);
                    answered.Add((JsonDocument.Parse(body).RootElement.GetProperty("RequestId").GetString()!, form));
                }
                catch (Exception e) when (stop.IsCancellationRequested && e is HttpRequestException or IOException or TaskCanceledException)
                {
                    return;   // the server is gone
                }
            }
        })).ToArray();

        while (answered.Count < 300)
        {
            await Task.Delay(20);
        }

        stop.Cancel();
        _served.KillServer();
        await Task.WhenAll(clients);

        var trail = string.Concat(Directory.EnumerateFiles(Path.Combine(Home, "audit"), "*.jsonl").Select(File.ReadAllText));
        var missing = answered.Where(a => !trail.Contains($"\"requestId\":\"{a.RequestId}\"", StringComparison.Ordinal)).ToList();
        Assert.True(missing.Count == 0, $"{missing.Count} of {answered.Count} answered calls have no audit event, e.g. {missing.FirstOrDefault().RequestId}");
        var verify = CliProcess.Run(Home, "audit", "verify");
        Assert.True(verify.ExitCode == 0, verify.Stdout + verify.Stderr);

        // Restarted, the server refuses every answered request sent again (its nonce is in the trail).
        using var again = new HttpClient { BaseAddress = new Uri(_served.StartServer()) };
        foreach (var (_, form) in answered.Take(20))
        {
            using var replay = await again.PostAsync("/", new FormUrlEncodedContent(form));
            var body = await replay.Content.ReadAsStringAsync();
            Assert.Equal("SignatureNonceUsed", JsonDocument.Parse(body).RootElement.GetProperty("Code").GetString());
        }
    }

    [Fact]
    public void A_second_server_on_the_same_home_or_port_exits_with_a_one_line_reason()
    {
        var endpoint = new Uri(_served.StartServer());

        var sameHome = CliProcess.Run(Home, "kms", "serve", "--port", "0");
        Assert.Equal(1, sameHome.ExitCode);
        Assert.StartsWith("tde: Another KMS server is already serving this home", sameHome.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", sameHome.Stderr, StringComparison.Ordinal);

        using var other = new ServedHome("tde-serve-other-");
        var samePort = CliProcess.Run(other.Home, "kms", "serve", "--port", endpoint.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(1, samePort.ExitCode);
        Assert.Contains("address already in use", samePort.Stderr, StringComparison.Ordinal);
        Assert.Contains("Choose another --port", samePort.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", samePort.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--host", "localhost")]
    [InlineData("--cert", "/nonexistent/server.pfx")]
    public void A_server_that_cannot_start_exits_with_a_one_line_reason(string option, string value)
    {
        var failed = CliProcess.Run(Home, "kms", "serve", "--port", "0", option, value);
        Assert.NotEqual(0, failed.ExitCode);
        Assert.StartsWith("tde: ", failed.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", failed.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("--port", failed.Stderr, StringComparison.Ordinal);   // the port is not the problem
    }

    // docs/server.md: 'tde kms serve --port 8443 --cert kms.pfx --cert-password-env KMS_PFX_PASSWORD'.
    // A relative --cert is a path from the working directory (Kestrel alone resolves it against the binary's folder).
    [Fact]
    public async Task A_relative_cert_path_is_read_from_the_working_directory()
    {
        using (var rsa = System.Security.Cryptography.RSA.Create(2048))
        {
            var request = new System.Security.Cryptography.X509Certificates.CertificateRequest(
                "CN=127.0.0.1", rsa, System.Security.Cryptography.HashAlgorithmName.SHA256, System.Security.Cryptography.RSASignaturePadding.Pkcs1);
            using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
            await File.WriteAllBytesAsync(Path.Combine(Home, "kms.pfx"), certificate.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pfx, "pw"));
        }

        var missing = CliProcess.Run(Home, "kms", "serve", "--port", "0", "--cert", "missing.pfx");
        Assert.Equal(1, missing.ExitCode);
        Assert.Equal($"tde: The certificate '{Path.Combine(Home, "missing.pfx")}' does not exist. Give --cert the path of a PKCS#12 (.pfx) file.\n", missing.Stderr);

        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Home };
        foreach (var arg in new[] { Path.Combine(AppContext.BaseDirectory, "tde.dll"), "kms", "serve", "--port", "0", "--cert", "kms.pfx", "--cert-password-env", "KMS_PFX_PASSWORD" })
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["TDE_HOME"] = Home;
        start.Environment["KMS_PFX_PASSWORD"] = "pw";
        using var server = Process.Start(start)!;
        try
        {
            var line = await server.StandardOutput.ReadLineAsync() ?? throw new InvalidOperationException("The server exited: " + await server.StandardError.ReadToEndAsync());
            var url = line.Split(' ').First(w => w.StartsWith("https://", StringComparison.Ordinal)).TrimEnd(',');
            using var client = new HttpClient(new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, _, _, _) => true }) { BaseAddress = new Uri(url) };
            Assert.Equal("ok", await client.GetStringAsync("/healthz"));
        }
        finally
        {
            server.Kill(entireProcessTree: true);
            await server.WaitForExitAsync();
        }
    }

    [Fact]
    public void A_certificate_password_variable_without_a_certificate_or_unset_is_refused()
    {
        var noCert = CliProcess.Run(Home, "kms", "serve", "--port", "0", "--cert-password-env", "KMS_PFX_PASSWORD");
        Assert.Equal(2, noCert.ExitCode);
        Assert.Equal("tde: --cert-password-env needs --cert FILE.pfx (without --cert the server serves plain HTTP).\n", noCert.Stderr);
        Assert.Equal("", noCert.Stdout);

        File.WriteAllBytes(Path.Combine(Home, "kms.pfx"), [0x30]);
        var unset = CliProcess.Run(Home, "kms", "serve", "--port", "0", "--cert", "kms.pfx", "--cert-password-env", "TDE_TEST_UNSET_PFX_PASSWORD");
        Assert.Equal(1, unset.ExitCode);
        Assert.Equal("tde: The environment variable 'TDE_TEST_UNSET_PFX_PASSWORD' named by --cert-password-env is not set. Export it with the certificate's password.\n", unset.Stderr);
    }

    [Fact]
    public void An_empty_certificate_path_is_a_usage_error_not_a_crash()
    {
        var empty = CliProcess.Run(Home, "kms", "serve", "--port", "0", "--cert", "");

        Assert.Equal(2, empty.ExitCode);
        Assert.StartsWith("tde: --cert needs the path of a PKCS#12 (.pfx) file.", empty.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", empty.Stderr, StringComparison.Ordinal);
    }

    private static Dictionary<string, string> Signed(string action, string accessKeyId, byte[] secret, params (string Name, string Value)[] parameters)
    {
        var form = parameters.ToDictionary(p => p.Name, p => p.Value, StringComparer.Ordinal);
        RpcSignature.SignRequest(form, action, "2016-01-20", accessKeyId, secret);
        return form;
    }
}
