using System.Diagnostics;
using System.Globalization;
using System.Net;
using TdeEngine.Audit;
using TdeEngine.Kms;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Ram;
using TdeEngine.Server;

namespace TdeEngine.Benchmarks;

/// <summary>
/// Load over loopback: signed GenerateDataKey requests (RPC signature 1.0, fresh nonce each) against
/// the real server, with RAM and the audit trail on, from N concurrent HTTP/1.1 clients in the same
/// process. Reports requests per second, and the same server's rate for an unauthenticated
/// <c>/healthz</c> as the HTTP baseline measured in the same run.
/// </summary>
internal static class ServerLoad
{
    public static int Run(string[] args)
    {
        var seconds = Option(args, "--seconds", 10);
        var concurrency = Option(args, "--concurrency", 64);
        var home = Path.Combine(Path.GetTempPath(), "tde-load-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(home);
        using var root = FileRootKeyProvider.OpenOrCreate(Path.Combine(home, "root.key"));
        using var kms = KeyManagementService.Open(new KmsOptions { Home = home }, root);
        using var ram = RamService.Open(home, root);
        using var audit = AuditTrail.Open(home, root);
        var withoutAudit = args.Contains("--without-audit");
        var app = KmsServer.Build(new KmsServerOptions { Port = 0 }, kms, ram, withoutAudit ? new DiscardingAudit() : audit);
        app.StartAsync().GetAwaiter().GetResult();
        try
        {
            var caller = KmsCallContext.ForRoot(kms.Options.DefaultAccountId);
            var keyId = kms.CreateKey(caller, new CreateKeyRequest { Description = "load" }).KeyId;
            using var accessKey = ram.CreateAccessKey(caller);
            var secret = accessKey.Secret.Span.ToArray();
            var baseAddress = new Uri(app.Urls.First());
            using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = concurrency }) { BaseAddress = baseAddress };

            var health = Measure(seconds, concurrency, async () =>
            {
                using var response = await http.GetAsync("/healthz").ConfigureAwait(false);
                return response.StatusCode == HttpStatusCode.OK;
            });
            var generate = Measure(seconds, concurrency, async () =>
            {
                var form = new Dictionary<string, string>(StringComparer.Ordinal)
                {
                    ["Action"] = "GenerateDataKey", ["Format"] = "JSON", ["Version"] = "2016-01-20", ["AccessKeyId"] = accessKey.AccessKeyId,
                    ["SignatureMethod"] = "HMAC-SHA1", ["SignatureVersion"] = "1.0", ["SignatureNonce"] = Guid.NewGuid().ToString("N"),
                    ["Timestamp"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
                    ["KeyId"] = keyId, ["EncryptionContext"] = "{\"db\":\"orders\"}",
                };
                form["Signature"] = RpcSignature.Compute("POST", form, secret);
                using var response = await http.PostAsync("/", new FormUrlEncodedContent(form)).ConfigureAwait(false);
                return response.StatusCode == HttpStatusCode.OK;
            });

            // The same call without HTTP: the gateway (RAM + KMS + audit) and the KMS action surface alone.
            var gateway = new TdeEngine.Gateway.KmsGateway(kms, ram, withoutAudit ? new DiscardingAudit() : audit);
            var kmsApi = new TdeEngine.Kms.Api.KmsApi(kms);
            var parameters = new Dictionary<string, string> { ["KeyId"] = keyId, ["EncryptionContext"] = "{\"db\":\"orders\"}" };
            var inProcess = Measure(seconds, concurrency, async () =>
            {
                using var response = await gateway.InvokeKmsAsync(caller, "GenerateDataKey", parameters).ConfigureAwait(false);
                return response.IsSuccess;
            });
            var apiOnly = Measure(seconds, concurrency, () =>
            {
                using var response = kmsApi.Invoke(caller, "GenerateDataKey", parameters);
                return Task.FromResult(response.IsSuccess);
            });

            var verification = audit.Verify();
            Console.WriteLine($"server-load: {seconds} s per measurement, {concurrency} concurrent clients in-process, loopback, audit {(withoutAudit ? "OFF (measurement only)" : "on")}");
            Console.WriteLine("| request | requests/s | errors | ratio to /healthz |");
            Console.WriteLine("|---|---:|---:|---:|");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| GET /healthz (HTTP baseline) | {health.Rate:N0} | {health.Errors} | 1.00 |"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| signed GenerateDataKey | {generate.Rate:N0} | {generate.Errors} | {generate.Rate / health.Rate:F2} |"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| in process, no HTTP: KmsGateway GenerateDataKey | {inProcess.Rate:N0} | {inProcess.Errors} | {inProcess.Rate / health.Rate:F2} |"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| in process, no HTTP: KmsApi GenerateDataKey | {apiOnly.Rate:N0} | {apiOnly.Errors} | {apiOnly.Rate / health.Rate:F2} |"));
            Console.WriteLine($"audit trail after the run: {verification.Message}");
        }
        finally
        {
            app.StopAsync().GetAwaiter().GetResult();
            ((IDisposable)app).Dispose();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(home, recursive: true);
        }

        return 0;
    }

    // For measuring what auditing costs: drops events. The product has no way to turn auditing off.
    private sealed class DiscardingAudit : IAuditSink
    {
        public AuditEvent Append(AuditEvent auditEvent) => auditEvent;

        public Task<AuditEvent> AppendAsync(AuditEvent auditEvent) => Task.FromResult(auditEvent);
    }

    private static (double Rate, long Errors) Measure(int seconds, int concurrency, Func<Task<bool>> request)
    {
        long ok = 0, errors = 0;
        var stop = Stopwatch.StartNew();
        var duration = TimeSpan.FromSeconds(seconds);
        var workers = Enumerable.Range(0, concurrency).Select(_ => Task.Run(async () =>
        {
            while (stop.Elapsed < duration)
            {
                if (await request().ConfigureAwait(false))
                {
                    Interlocked.Increment(ref ok);
                }
                else
                {
                    Interlocked.Increment(ref errors);
                }
            }
        })).ToArray();
        Task.WaitAll(workers);
        return (ok / stop.Elapsed.TotalSeconds, errors);
    }

    private static int Option(string[] args, string name, int fallback)
    {
        var index = Array.IndexOf(args, name);
        return index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1], CultureInfo.InvariantCulture) : fallback;
    }
}
