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

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_buffer;

    [ThreadStatic]
    private static Utf8JsonWriter? t_writer;

    /// <summary>
    /// The fields of an event that do not depend on its place in the chain (eventId through
    /// additionalEventData), as JSON members without the enclosing braces. Callers compute it, so the
    /// single writer thread only has to chain, hash and write.
    /// </summary>
    public static byte[] Core(AuditEvent e)
    {
        // One reusable buffer and writer per thread: an event's JSON is built without growing buffers,
        // and only the finished bytes are allocated.
        var buffer = t_buffer ??= new ArrayBufferWriter<byte>(2048);
        buffer.ResetWrittenCount();
        var w = t_writer ??= new Utf8JsonWriter(buffer, Options);
        w.Reset(buffer);
        Span<byte> time = stackalloc byte[32];
        e.EventTime.UtcDateTime.TryFormat(time, out var timeLength, "yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
        w.WriteStartObject();
        w.WriteString("eventId"u8, Text(e.EventId));
        w.WriteString("eventVersion"u8, "1"u8);
        w.WriteString("eventTime"u8, time[..timeLength]);
        w.WriteString("eventName"u8, Text(e.EventName));
        w.WriteString("eventType"u8, "ApiCall"u8);
        w.WriteString("eventSource"u8, Text(e.EventSource));
        w.WriteString("serviceName"u8, Text(e.ServiceName));
        w.WriteString("apiVersion"u8, Text(e.ApiVersion));
        w.WriteString("acsRegion"u8, Text(e.AcsRegion));
        w.WriteString("requestId"u8, Text(e.RequestId));
        w.WriteString("sourceIpAddress"u8, Text(e.SourceIpAddress));
        w.WriteString("userAgent"u8, Text(e.UserAgent ?? ""));
        w.WriteStartObject("userIdentity"u8);
        w.WriteString("type"u8, Text(e.UserIdentity.Type));
        w.WriteString("accountId"u8, Text(e.UserIdentity.AccountId));
        w.WriteString("principalId"u8, Text(e.UserIdentity.PrincipalId));
        w.WriteString("userName"u8, Text(e.UserIdentity.UserName));
        if (e.UserIdentity.AccessKeyId is not null)
        {
            w.WriteString("accessKeyId"u8, Text(e.UserIdentity.AccessKeyId));
        }

        w.WriteEndObject();
        WriteMap(w, "requestParameters"u8, e.RequestParameters);
        if (e.ErrorCode is not null)
        {
            w.WriteString("errorCode"u8, Text(e.ErrorCode));
            w.WriteString("errorMessage"u8, Text(e.ErrorMessage ?? ""));
        }

        WriteMap(w, "additionalEventData"u8, e.AdditionalEventData);
        w.WriteEndObject();
        w.Flush();
        return buffer.WrittenSpan[1..^1].ToArray();
    }

    /// <summary>
    /// Appends the line of an event at <paramref name="sequence"/> after <paramref name="previousHash"/>
    /// to <paramref name="output"/>: <c>{"eventSequence":N,&lt;core&gt;,"previousHash":"…","hash":"…"}</c>
    /// plus a newline, where the hash is SHA-256 of the line without its hash member (closed with
    /// <c>}</c>). Returns that hash.
    /// </summary>
    public static string Chain(ReadOnlySpan<byte> core, long sequence, string previousHash, IBufferWriter<byte> output)
    {
        ReadOnlySpan<byte> head = "{\"eventSequence\":"u8;
        ReadOnlySpan<byte> previous = ",\"previousHash\":\""u8;
        ReadOnlySpan<byte> hashMember = ",\"hash\":\""u8;
        Span<byte> number = stackalloc byte[20];
        sequence.TryFormat(number, out var numberLength, default, CultureInfo.InvariantCulture);
        var bodyLength = head.Length + numberLength + 1 + core.Length + previous.Length + previousHash.Length + 2;
        var lineLength = bodyLength - 1 + hashMember.Length + 64 + 3;
        var line = output.GetSpan(lineLength)[..lineLength];
        var at = Put(line, 0, head);
        at = Put(line, at, number[..numberLength]);
        at = Put(line, at, ","u8);
        at = Put(line, at, core);
        at = Put(line, at, previous);
        at += Encoding.ASCII.GetBytes(previousHash, line[at..]);
        Put(line, at, "\"}"u8);
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(line[..bodyLength], digest);
        var hash = Convert.ToHexStringLower(digest);
        at = bodyLength - 1;   // reopen the object: the hash member goes before the closing brace
        at = Put(line, at, hashMember);
        at += Encoding.ASCII.GetBytes(hash, line[at..]);
        Put(line, at, "\"}\n"u8);
        output.Advance(lineLength);
        return hash;
    }

    private static int Put(Span<byte> line, int at, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(line[at..]);
        return at + bytes.Length;
    }

    // A member named twice would let a parser pick one value while the hash covers another.
    internal static readonly JsonDocumentOptions Strict = new() { AllowDuplicateProperties = false };

    /// <summary>Parses one line back into an event (with its hash as written). A member named twice is refused.</summary>
    public static AuditEvent Parse(string line)
    {
        using var document = JsonDocument.Parse(line, Strict);
        return Read(document.RootElement);
    }

    /// <summary>
    /// The event of <paramref name="line"/> (UTF-8, without its newline) if the line is byte for byte
    /// what <see cref="Chain"/> writes for that event: members in their order, nothing before or after,
    /// no other spelling of a value, and a hash that matches. Null for any other line.
    /// </summary>
    public static AuditEvent? ParseCanonical(ReadOnlySpan<byte> line)
    {
        AuditEvent e;
        try
        {
            using var document = JsonDocument.Parse(line.ToArray(), Strict);
            e = Read(document.RootElement);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or ArgumentException)
        {
            return null;
        }

        var rebuilt = new ArrayBufferWriter<byte>(line.Length + 1);
        Chain(Core(e), e.EventSequence, e.PreviousHash, rebuilt);
        return rebuilt.WrittenSpan[..^1].SequenceEqual(line) ? e : null;
    }

    /// <summary>The eventSequence and eventId a damaged line claims, for naming it in a report (duplicates allowed here).</summary>
    public static (long? Sequence, string? EventId) Claimed(ReadOnlySpan<byte> line)
    {
        try
        {
            using var document = JsonDocument.Parse(line.ToArray());
            var r = document.RootElement;
            if (r.ValueKind != JsonValueKind.Object)
            {
                return (null, null);
            }

            long? sequence = r.TryGetProperty("eventSequence", out var s) && s.TryGetInt64(out var n) ? n : null;
            var id = r.TryGetProperty("eventId", out var i) && i.ValueKind == JsonValueKind.String ? i.GetString() : null;
            return (sequence, id);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)   // an id with an unpaired surrogate escape
        {
            return (null, null);
        }
    }

    private static AuditEvent Read(JsonElement r)
    {
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

    // Text as the trail writes it: an unpaired UTF-16 surrogate (possible only from an app that
    // embeds the gateway; HTTP and the CLI decode to U+FFFD) becomes U+FFFD, as UTF-8 would carry
    // it, so the line read back rebuilds to the same bytes and verifies.
    private static string Text(string value) =>
        HasSurrogate(value) ? Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(value)) : value;

    private static bool HasSurrogate(string value) => value.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') >= 0;

    private static void WriteMap(Utf8JsonWriter w, ReadOnlySpan<byte> name, IReadOnlyDictionary<string, string> map)
    {
        w.WriteStartObject(name);
        var keys = new string[map.Count];
        var at = 0;
        var clean = true;
        foreach (var (key, value) in map)
        {
            keys[at++] = key;
            clean &= !HasSurrogate(key) && !HasSurrogate(value);
        }

        if (!clean)
        {
            // Rare: an embedding app's unpaired surrogates. Keys that become equal once cleaned keep
            // the first in ordinal order of the originals, so no member is named twice.
            Array.Sort(keys, StringComparer.Ordinal);
            var cleaned = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var key in keys)
            {
                cleaned.TryAdd(Text(key), Text(map[key]));
            }

            map = cleaned;
            keys = [.. cleaned.Keys];
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
