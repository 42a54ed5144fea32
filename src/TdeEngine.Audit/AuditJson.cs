using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace TdeEngine.Audit;

/// <summary>
/// The line format of the trail: one compact JSON object per line, fields in a fixed order, the
/// <c>hash</c> last. The hash is SHA-256 over the UTF-8 of the line without its <c>,"hash":"…"</c>
/// suffix (with <c>}</c> closing it), so anyone can recompute it with standard tools.
/// </summary>
internal static class AuditJson
{
    public const string GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000";

    private static readonly JsonWriterOptions Options = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// The fields of an event that do not depend on its place in the chain (eventId through
    /// additionalEventData), as JSON members without the enclosing braces. Callers compute it, so the
    /// single writer thread only has to chain, hash and write.
    /// </summary>
    public static byte[] Core(AuditEvent e)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer, Options))
        {
            w.WriteStartObject();
            w.WriteString("eventId", e.EventId);
            w.WriteString("eventVersion", "1");
            w.WriteString("eventTime", e.EventTime.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
            w.WriteString("eventName", e.EventName);
            w.WriteString("eventType", "ApiCall");
            w.WriteString("eventSource", e.EventSource);
            w.WriteString("serviceName", e.ServiceName);
            w.WriteString("apiVersion", e.ApiVersion);
            w.WriteString("acsRegion", e.AcsRegion);
            w.WriteString("requestId", e.RequestId);
            w.WriteString("sourceIpAddress", e.SourceIpAddress);
            w.WriteString("userAgent", e.UserAgent ?? "");
            w.WriteStartObject("userIdentity");
            w.WriteString("type", e.UserIdentity.Type);
            w.WriteString("accountId", e.UserIdentity.AccountId);
            w.WriteString("principalId", e.UserIdentity.PrincipalId);
            w.WriteString("userName", e.UserIdentity.UserName);
            if (e.UserIdentity.AccessKeyId is not null)
            {
                w.WriteString("accessKeyId", e.UserIdentity.AccessKeyId);
            }

            w.WriteEndObject();
            WriteMap(w, "requestParameters", e.RequestParameters);
            if (e.ErrorCode is not null)
            {
                w.WriteString("errorCode", e.ErrorCode);
                w.WriteString("errorMessage", e.ErrorMessage ?? "");
            }

            WriteMap(w, "additionalEventData", e.AdditionalEventData);
            w.WriteEndObject();
        }

        return buffer.WrittenSpan[1..^1].ToArray();
    }

    /// <summary>
    /// The line of an event at <paramref name="sequence"/> after <paramref name="previousHash"/>:
    /// <c>{"eventSequence":N,&lt;core&gt;,"previousHash":"…","hash":"…"}</c> plus a newline, where the hash
    /// is SHA-256 of the line without its hash member (closed with <c>}</c>).
    /// </summary>
    public static (string Hash, byte[] Line) Chain(ReadOnlySpan<byte> core, long sequence, string previousHash)
    {
        ReadOnlySpan<byte> head = "{\"eventSequence\":"u8;
        ReadOnlySpan<byte> previous = ",\"previousHash\":\""u8;
        ReadOnlySpan<byte> hashMember = ",\"hash\":\""u8;
        var number = Encoding.ASCII.GetBytes(sequence.ToString(CultureInfo.InvariantCulture));
        var bodyLength = head.Length + number.Length + 1 + core.Length + previous.Length + previousHash.Length + 2;
        var line = new byte[bodyLength - 1 + hashMember.Length + 64 + 3];
        var at = 0;
        void Put(ReadOnlySpan<byte> bytes)
        {
            bytes.CopyTo(line.AsSpan(at));
            at += bytes.Length;
        }

        Put(head);
        Put(number);
        Put(","u8);
        Put(core);
        Put(previous);
        Put(Encoding.ASCII.GetBytes(previousHash));
        Put("\"}"u8);
        var hash = Convert.ToHexStringLower(SHA256.HashData(line.AsSpan(0, bodyLength)));
        at = bodyLength - 1;   // reopen the object: the hash member goes before the closing brace
        Put(hashMember);
        Put(Encoding.ASCII.GetBytes(hash));
        Put("\"}\n"u8);
        return (hash, line);
    }

    /// <summary>Parses one line back into an event (with its hash as written).</summary>
    public static AuditEvent Parse(string line)
    {
        using var document = JsonDocument.Parse(line);
        var r = document.RootElement;
        var identity = r.GetProperty("userIdentity");
        return new AuditEvent
        {
            EventSequence = r.GetProperty("eventSequence").GetInt64(),
            EventId = r.GetProperty("eventId").GetString()!,
            EventTime = DateTimeOffset.Parse(r.GetProperty("eventTime").GetString()!, CultureInfo.InvariantCulture),
            EventName = r.GetProperty("eventName").GetString()!,
            EventSource = r.GetProperty("eventSource").GetString()!,
            ServiceName = r.GetProperty("serviceName").GetString()!,
            ApiVersion = r.GetProperty("apiVersion").GetString()!,
            AcsRegion = r.GetProperty("acsRegion").GetString()!,
            RequestId = r.GetProperty("requestId").GetString()!,
            SourceIpAddress = r.GetProperty("sourceIpAddress").GetString()!,
            UserAgent = r.GetProperty("userAgent").GetString(),
            UserIdentity = new AuditIdentity(identity.GetProperty("type").GetString()!, identity.GetProperty("accountId").GetString()!,
                identity.GetProperty("principalId").GetString()!, identity.GetProperty("userName").GetString()!,
                identity.TryGetProperty("accessKeyId", out var ak) ? ak.GetString() : null),
            RequestParameters = ReadMap(r.GetProperty("requestParameters")),
            ErrorCode = r.TryGetProperty("errorCode", out var code) ? code.GetString() : null,
            ErrorMessage = r.TryGetProperty("errorMessage", out var message) ? message.GetString() : null,
            AdditionalEventData = ReadMap(r.GetProperty("additionalEventData")),
            PreviousHash = r.GetProperty("previousHash").GetString()!,
            Hash = r.GetProperty("hash").GetString()!,
        };
    }

    private static void WriteMap(Utf8JsonWriter w, string name, IReadOnlyDictionary<string, string> map)
    {
        w.WriteStartObject(name);
        var keys = new string[map.Count];
        var at = 0;
        foreach (var key in map.Keys)
        {
            keys[at++] = key;
        }

        Array.Sort(keys, StringComparer.Ordinal);
        foreach (var key in keys)
        {
            w.WriteString(key, map[key]);
        }

        w.WriteEndObject();
    }

    private static Dictionary<string, string> ReadMap(JsonElement element) =>
        element.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "", StringComparer.Ordinal);
}
