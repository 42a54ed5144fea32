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

    /// <summary>The body (without hash) and the full line of an event.</summary>
    public static (byte[] Body, string Hash, string Line) Seal(AuditEvent e)
    {
        var body = Body(e);
        var hash = Convert.ToHexStringLower(SHA256.HashData(body));
        var line = Encoding.UTF8.GetString(body, 0, body.Length - 1) + ",\"hash\":\"" + hash + "\"}";
        return (body, hash, line);
    }

    public static byte[] Body(AuditEvent e)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer, Options))
        {
            w.WriteStartObject();
            w.WriteNumber("eventSequence", e.EventSequence);
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
            w.WriteString("previousHash", e.PreviousHash);
            w.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
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
        foreach (var (key, value) in map.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            w.WriteString(key, value);
        }

        w.WriteEndObject();
    }

    private static Dictionary<string, string> ReadMap(JsonElement element) =>
        element.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "", StringComparer.Ordinal);
}
