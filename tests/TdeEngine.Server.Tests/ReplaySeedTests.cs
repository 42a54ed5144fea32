using TdeEngine.Audit;
using TdeEngine.Kms.RootKeys;

namespace TdeEngine.Server.Tests;

/// <summary>
/// A starting server picks the nonce, caller and time out of each recent audit line without a full
/// parse. It must read exactly what the full parser reads, whatever the caller put in the values.
/// </summary>
public sealed class ReplaySeedTests : IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-seed-" + Guid.NewGuid().ToString("N"));

    public ReplaySeedTests() => Directory.CreateDirectory(_home);

    public void Dispose() => Directory.Delete(_home, recursive: true);

    private static AuditEvent Event(string userName, string? accessKeyId, string? nonce, Dictionary<string, string> parameters) => new()
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
        UserIdentity = new AuditIdentity("ram-user", "1234567890123456", "2000", userName, accessKeyId),
        RequestParameters = parameters,
        AdditionalEventData = nonce is null
            ? new Dictionary<string, string> { ["keyId"] = "k" }
            : new Dictionary<string, string> { ["keyId"] = "k", ["signatureNonce"] = nonce },
    };

    [Fact]
    public void The_fields_picked_from_a_line_are_those_the_full_parser_reads()
    {
        var events = new[]
        {
            Event("app", "LTAIplain", "4f0c2d3e-plain", new() { ["KeyId"] = "alias/orders" }),
            // Values that hold the very member names the scanner looks for, and escapes.
            Event("x\",\"accessKeyId\":\"LTAIforged", "LTAIreal", "n-1", new() { ["EncryptionContext"] = "{\"signatureNonce\":\"forged\"}" }),
            Event("app", "LTAIreal", "nonce with \"quotes\" and \\ backslash", new() { ["KeyId"] = "k" }),
            Event("app", "LTAI\"odd", "n-2", new() { ["KeyId"] = "k" }),
            Event("app}{", null, "n-3", new() { ["KeyId"] = "k" }),
            Event("cli", null, null, new() { ["KeyId"] = "k" }),
        };
        using var root = FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key"));
        using (var trail = AuditTrail.Open(_home, root))
        {
            foreach (var e in events)
            {
                trail.Append(e);
            }

            var lines = trail.ReadRawLines().ToList();
            Assert.Equal(events.Length, lines.Count);
            for (var i = 0; i < lines.Count; i++)
            {
                var found = ReplayGuard.TryScan(lines[i], out var time, out var accessKeyId, out var nonce);
                var full = AuditJsonReader.Parse(lines[i]);
                Assert.Equal(events[i].AdditionalEventData.ContainsKey("signatureNonce"), found);
                if (found)
                {
                    Assert.Equal(full.EventTime, time);
                    Assert.Equal(events[i].UserIdentity.AccessKeyId, accessKeyId);
                    Assert.Equal(events[i].AdditionalEventData["signatureNonce"], nonce);
                }
            }
        }

        // And the guard refuses exactly the seeded (key, nonce) pairs.
        using var again = AuditTrail.Open(_home, root);
        var guard = new ReplayGuard(TimeProvider.System);
        Assert.Equal(4, guard.SeedFrom(again));   // events without an access key id cannot be replayed over HTTP
        var now = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal("SignatureNonceUsed", guard.Check("LTAIreal", now, "nonce with \"quotes\" and \\ backslash")?.Code);
        Assert.Equal("SignatureNonceUsed", guard.Check("LTAIreal", now, "n-1")?.Code);
        Assert.Null(guard.Check("LTAIforged", now, "n-1"));
        Assert.Null(guard.Check("LTAIreal", now, "forged"));
    }
}
