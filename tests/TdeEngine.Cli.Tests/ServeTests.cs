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

    private static Dictionary<string, string> Signed(string action, string accessKeyId, byte[] secret)
    {
        var form = new Dictionary<string, string>(StringComparer.Ordinal);
        RpcSignature.SignRequest(form, action, "2016-01-20", accessKeyId, secret);
        return form;
    }
}
