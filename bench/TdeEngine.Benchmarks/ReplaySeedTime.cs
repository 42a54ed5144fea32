using System.Diagnostics;
using System.Globalization;
using TdeEngine.Audit;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Server;

namespace TdeEngine.Benchmarks;

/// <summary>
/// <c>replay-seed [--events N]</c>: how long a starting KMS server spends reading back the
/// SignatureNonces of the last 30 minutes from its audit trail (it listens only afterwards), for a
/// trail holding N recent server events, against reading the same lines without looking at them.
/// </summary>
internal static class ReplaySeedTime
{
    public static int Run(string[] args)
    {
        var events = args.Length >= 2 && args[0] == "--events" ? int.Parse(args[1], CultureInfo.InvariantCulture) : 300_000;
        var home = Path.Combine(Path.GetTempPath(), "tde-seed-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(home);
        try
        {
            using var root = FileRootKeyProvider.OpenOrCreate(Path.Combine(home, "root.key"));
            using (var writer = AuditTrail.Open(home, root))
            {
                var pending = new List<Task>(4096);
                for (var i = 0; i < events; i++)
                {
                    pending.Add(writer.AppendAsync(ServerEvent(i)));
                    if (pending.Count == pending.Capacity)
                    {
                        Task.WaitAll(pending);
                        pending.Clear();
                    }
                }

                Task.WaitAll(pending);
            }

            using var trail = AuditTrail.Open(home, root);
            Console.WriteLine($"| round | read the lines (baseline) | seed the replay guard | nonces | ratio | managed memory held per nonce |");
            Console.WriteLine($"|---:|---:|---:|---:|---:|---:|");
            for (var round = 1; round <= 3; round++)
            {
                var clock = Stopwatch.StartNew();
                var lines = trail.ReadRawLines(DateTimeOffset.UtcNow.AddMinutes(-30), null).Count();
                var read = clock.Elapsed;
                var before = GC.GetTotalMemory(forceFullCollection: true);
                clock.Restart();
                var guard = new ReplayGuard(TimeProvider.System);
                var seeded = guard.SeedFrom(trail);
                var seed = clock.Elapsed;

                // What the guard keeps: the managed heap after a full collection, with the guard alive.
                var held = GC.GetTotalMemory(forceFullCollection: true) - before;
                GC.KeepAlive(guard);
                Console.WriteLine($"| {round} | {read.TotalMilliseconds:N0} ms ({lines:N0} lines) | {seed.TotalMilliseconds:N0} ms | {seeded:N0} | {seed / read:N1} | {(double)held / Math.Max(seeded, 1):N0} B |");
            }

            return 0;
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }

    // What the gateway records for a signed server call (ids, context, decision and the nonce).
    private static AuditEvent ServerEvent(int i) => new()
    {
        EventId = Guid.NewGuid().ToString(),
        EventTime = DateTimeOffset.UtcNow,
        EventName = "GenerateDataKey",
        EventSource = "kms.aliyuncs.com",
        ServiceName = "Kms",
        ApiVersion = "2016-01-20",
        AcsRegion = "cn-hangzhou",
        RequestId = Guid.NewGuid().ToString(),
        SourceIpAddress = "127.0.0.1",
        UserAgent = "AlibabaCloud (linux; x64) Node.js/v18 Core/1.7.12",
        UserIdentity = new AuditIdentity("ram-user", "1234567890123456", "200000000001", "app", "LTAI" + (i % 64).ToString("D20", CultureInfo.InvariantCulture)),
        RequestParameters = new Dictionary<string, string> { ["KeyId"] = "alias/orders", ["EncryptionContext"] = "{\"db\":\"orders\"}", ["NumberOfBytes"] = "32" },
        AdditionalEventData = new Dictionary<string, string>
        {
            ["keyId"] = "0b8a3f2e-9c1d-4e5f-8a7b-6c5d4e3f2a1b",
            ["decision"] = "Allow",
            ["signatureNonce"] = Guid.NewGuid().ToString(),
        },
    };
}
