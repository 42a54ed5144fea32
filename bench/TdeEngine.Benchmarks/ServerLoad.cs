using TdeEngine.Kms.Api;
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
    private static int WarmUpSeconds = 15;

    public static int Run(string[] args)
    {
        // As `tde kms serve` does, before the first socket; --pool-sockets measures without it. In this
        // process it applies to the load clients' sockets too.
        var inlineCompletions = !args.Contains("--pool-sockets") ? KmsServer.PreferInlineSocketCompletions()
            : Environment.GetEnvironmentVariable(KmsServer.InlineSocketCompletionsVariable) == "1";
        WarmUpSeconds = Option(args, "--warmup", 15);
        var seconds = Option(args, "--seconds", 10);
        var concurrency = Option(args, "--concurrency", 64);
        var home = Path.Combine(Path.GetTempPath(), "tde-load-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(home);
        using var root = FileRootKeyProvider.OpenOrCreate(Path.Combine(home, "root.key"));
        using var kms = KeyManagementService.Open(new KmsOptions { Home = home }, root);
        using var ram = RamService.Open(home, root);
        using var audit = AuditTrail.Open(home, root);
        var withoutAudit = args.Contains("--without-audit");
        var onlyIndex = Array.IndexOf(args, "--only");
        var only = onlyIndex >= 0 && onlyIndex + 1 < args.Length ? args[onlyIndex + 1].Split(',') : null;
        var app = KmsServer.Build(new KmsServerOptions { Port = 0 }, kms, ram, withoutAudit ? new DiscardingAudit() : audit);
        var fixedBody = new byte[480];
        Microsoft.AspNetCore.Builder.EndpointRouteBuilderExtensions.MapPost(app, "/form", async (Microsoft.AspNetCore.Http.HttpContext c) =>
        {
            var form = await c.Request.ReadFormAsync().ConfigureAwait(false);
            c.Response.ContentLength = fixedBody.Length;
            await c.Response.Body.WriteAsync(fixedBody).ConfigureAwait(false);
        });
        app.StartAsync().GetAwaiter().GetResult();
        try
        {
            var caller = KmsCallContext.ForRoot(kms.Options.DefaultAccountId);
            var keyId = kms.CreateKey(caller, new CreateKeyRequest { Description = "load" }).KeyId;
            // The caller is a RAM user whose policy has conditions, as a service role would be: every
            // request is evaluated against the policy (encryption context, source IP and key tag).
            kms.TagResource(caller, keyId, [new KeyValuePair<string, string>("env", "prod")]);
            ram.CreateUser(caller, "orders-service");
            ram.CreatePolicy(caller, "OrdersDataKeys", """
                {"Version":"1","Statement":[{"Effect":"Allow","Action":["kms:GenerateDataKey","kms:Decrypt"],"Resource":"acs:kms:*:*:key/*",
                  "Condition":{"StringEquals":{"kms:EncryptionContext:db":"orders","kms:tag/env":"prod"},"IpAddress":{"acs:SourceIp":"127.0.0.0/8"}}}]}
                """);
            ram.AttachPolicy(caller, "User", "orders-service", "Custom", "OrdersDataKeys");
            using var accessKey = ram.CreateAccessKey(caller, "orders-service");
            var secret = accessKey.Secret.Span.ToArray();
            var baseAddress = new Uri(app.Urls.First());
            var endpoint = new IPEndPoint(IPAddress.Loopback, baseAddress.Port);
            using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = concurrency }) { BaseAddress = baseAddress };
            var encryptionContext = "{\"db\":\"orders\"}";
            Dictionary<string, string> Signed()
            {
                var form = new Dictionary<string, string>(StringComparer.Ordinal) { ["KeyId"] = keyId, ["EncryptionContext"] = encryptionContext };
                RpcSignature.SignRequest(form, "GenerateDataKey", "2016-01-20", accessKey.AccessKeyId, secret);
                return form;
            }

            var rows = new List<(string Name, (double Rate, long Errors, double CpuMicroseconds, double AllocatedBytes) Result)>();
            void Row(string name, string id, Func<Task<Func<Task<bool>>>> worker)
            {
                if (only is null || only.Contains(id))
                {
                    rows.Add((name, Measure(seconds, concurrency, worker)));
                }
            }

            Row("GET /healthz, lean client (HTTP baseline)", "raw-health", async () =>
            {
                var client = await RawHttpClient.ConnectAsync(endpoint).ConfigureAwait(false);
                return async () => await client.GetAsync("/healthz").ConfigureAwait(false) == 200;
            });
            Row("POST of the same signed form, parsed, fixed 480-byte answer (HTTP + form floor)", "raw-form", async () =>
            {
                var client = await RawHttpClient.ConnectAsync(endpoint).ConfigureAwait(false);
                return async () => await client.PostFormAsync(string.Join('&', Signed().Select(p => RpcSignature.Encode(p.Key) + "=" + RpcSignature.Encode(p.Value))), "/form")
                    .ConfigureAwait(false) == 200;
            });
            Row("signed GenerateDataKey, lean client", "raw-generate", async () =>
            {
                var client = await RawHttpClient.ConnectAsync(endpoint).ConfigureAwait(false);
                return async () => await client.PostFormAsync(string.Join('&', Signed().Select(p => RpcSignature.Encode(p.Key) + "=" + RpcSignature.Encode(p.Value))))
                    .ConfigureAwait(false) == 200;
            });
            Row("GET /healthz, HttpClient", "health", () => Task.FromResult<Func<Task<bool>>>(async () =>
            {
                using var response = await http.GetAsync("/healthz").ConfigureAwait(false);
                return response.StatusCode == HttpStatusCode.OK;
            }));
            Row("signed GenerateDataKey, HttpClient", "generate", () => Task.FromResult<Func<Task<bool>>>(async () =>
            {
                using var response = await http.PostAsync("/", new FormUrlEncodedContent(Signed())).ConfigureAwait(false);
                return response.StatusCode == HttpStatusCode.OK;
            }));

            // The same call without HTTP: the gateway (RAM + KMS + audit) and the KMS action surface alone.
            var gateway = new TdeEngine.Gateway.KmsGateway(kms, ram, withoutAudit ? new DiscardingAudit() : audit);
            var kmsApi = new TdeEngine.Kms.Api.KmsApi(kms);
            var parameters = new Dictionary<string, string> { ["KeyId"] = keyId, ["EncryptionContext"] = encryptionContext };
            var service = new KmsCallContext(ram.UserPrincipal(kms.Options.DefaultAccountId, "orders-service"), "127.0.0.1", KmsCallContext.NewRequestId(), "bench");
            Row("in process, no HTTP: KmsGateway GenerateDataKey", "gateway", () => Task.FromResult<Func<Task<bool>>>(async () =>
            {
                using var response = await gateway.InvokeKmsAsync(service, "GenerateDataKey", parameters).ConfigureAwait(false);
                return response.IsSuccess;
            }));
            Row("in process, no HTTP: KmsApi GenerateDataKey", "api", () => Task.FromResult<Func<Task<bool>>>(() =>
            {
                using var response = kmsApi.Invoke(caller, "GenerateDataKey", parameters);
                return Task.FromResult(response.IsSuccess);
            }));

            var verification = audit.Verify();
            Console.WriteLine($"server-load: {WarmUpSeconds} s warm-up then {seconds} s per measurement, server GC {System.Runtime.GCSettings.IsServerGC}, {concurrency} concurrent clients in-process, loopback, audit {(withoutAudit ? "OFF (measurement only)" : "on")}, inline socket completions {(inlineCompletions ? "on" : "off")}");
            Console.WriteLine("| request | requests/s | errors | ratio to the first row | CPU µs per request (client + server) | bytes allocated per request |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|");
            foreach (var (name, result) in rows)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {name} | {result.Rate:N0} | {result.Errors} | {result.Rate / rows[0].Result.Rate:F2} | {result.CpuMicroseconds:F1} | {result.AllocatedBytes:N0} |"));
            }

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

    // Each worker makes its own request function (its own connection, for the lean client), runs it
    // unmeasured for the warm-up (JIT tiering and thread-pool growth happen under load, and would
    // otherwise penalise whichever row runs first), then loops for the measured seconds.
    private static (double Rate, long Errors, double CpuMicroseconds, double AllocatedBytes) Measure(int seconds, int concurrency, Func<Task<Func<Task<bool>>>> worker)
    {
        var requests = Task.WhenAll(Enumerable.Range(0, concurrency).Select(_ => worker())).GetAwaiter().GetResult();
        Loop(WarmUpSeconds, requests);
        // CPU time per request is steadier than the rate on a shared VM whose host takes cycles away:
        // it counts what the process spent (both cores, client and server), not what it was given.
        using var process = Process.GetCurrentProcess();
        var cpuBefore = process.TotalProcessorTime;
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: false);
        var (rate, errors, elapsed) = Loop(seconds, requests);
        process.Refresh();
        var cpu = process.TotalProcessorTime - cpuBefore;
        var count = Math.Max(1, rate * elapsed);
        return (rate, errors, cpu.TotalMicroseconds / count, (GC.GetTotalAllocatedBytes(precise: false) - allocatedBefore) / count);
    }

    private static (double Rate, long Errors, double Seconds) Loop(int seconds, Func<Task<bool>>[] requests)
    {
        long ok = 0, errors = 0;
        var duration = TimeSpan.FromSeconds(seconds);
        var stop = Stopwatch.StartNew();
        var workers = requests.Select(request => Task.Run(async () =>
        {
            while (stop.Elapsed < duration)
            {
                bool success;
                try
                {
                    success = await request().ConfigureAwait(false);
                }
                catch (IOException)
                {
                    success = false;
                }

                if (success)
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
        return (ok / stop.Elapsed.TotalSeconds, errors, stop.Elapsed.TotalSeconds);
    }

    private static int Option(string[] args, string name, int fallback)
    {
        var index = Array.IndexOf(args, name);
        return index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1], CultureInfo.InvariantCulture) : fallback;
    }
}
