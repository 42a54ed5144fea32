using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using TdeEngine.Audit;
using TdeEngine.Gateway;

namespace TdeEngine.Server;

/// <summary>
/// Rejects a request whose timestamp is more than <see cref="Window"/> from the server's clock, or
/// whose SignatureNonce was already seen within the window (a replay).
/// </summary>
/// <remarks>
/// <para>
/// Nonces are held in memory. Every request that passes this check has its nonce written to the
/// audit trail with its event (durable before the answer), and <see cref="SeedFrom"/> reads them
/// back when a server starts, so a restart does not reopen the window. A second server on the same
/// home is refused (<see cref="ServerHomeLock"/>): it would not see this one's nonces.
/// </para>
/// <para>
/// Each (access key id, nonce) pair is kept as a 64-bit fingerprint (XXH3 under a random seed),
/// with the minute after which its request's timestamp is refused anyway, in the 12-byte slots of
/// a <see cref="NonceSet"/> (measured by <c>bench replay-seed</c>: see docs/benchmarks.md), for as
/// long as the timestamp is valid (16 minutes for a client with a true clock) rather than two
/// windows. A fresh request is refused as a replay only when its fingerprint equals one of the n
/// held: probability n/2^64, 10^-12 with the 17 million nonces of 16 minutes at 18,000 requests a
/// second.
/// </para>
/// </remarks>
internal sealed class ReplayGuard(TimeProvider time)
{
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(15);

    // A request stamped T is refused by its timestamp after T + Window; a minute more covers a
    // sweep by a caller whose clock read came later than a concurrent Check's.
    private static readonly TimeSpan Margin = TimeSpan.FromMinutes(1);

    // A seeded event records when it was served, not its request's timestamp, which was at most a
    // window earlier or later: its nonce is kept for two windows after the event.
    private static readonly TimeSpan SeedRetention = Window + Window + Margin;

    private readonly NonceSet _nonces = new();
    private long _lastSweep;

    /// <summary>How many nonces are remembered: not yet forgotten by a sweep (for tests and measurements).</summary>
    internal long Count => _nonces.LiveCount;

    /// <summary>Null when the request is fresh; otherwise the error code and message.</summary>
    public (string Code, string Message)? Check(string accessKeyId, string timestamp, string nonce)
    {
        if (!DateTimeOffset.TryParseExact(timestamp, ["yyyy-MM-dd'T'HH:mm:ss'Z'", "yyyy-MM-dd'T'HH:mm:ss.FFF'Z'"],
                System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var when))
        {
            return ("IllegalTimestamp", $"The Timestamp '{timestamp}' is not in the format yyyy-MM-ddTHH:mm:ssZ (UTC).");
        }

        var now = time.GetUtcNow();
        if ((now - when).Duration() > Window)
        {
            return ("InvalidTimeStamp.Expired", "The request Timestamp is more than 15 minutes from the server's time. Sync your clock and sign a new request.");
        }

        Sweep(now);
        return _nonces.TryAdd(Key(accessKeyId, nonce), MinuteAfter(when + Window + Margin))
            ? null
            : ("SignatureNonceUsed", "The SignatureNonce was already used: this request is a replay. Sign each request with a new nonce.");
    }

    /// <summary>
    /// Remembers the nonces of the server events in <paramref name="trail"/> from the last two
    /// windows (older segments are not read). Returns how many were found.
    /// </summary>
    /// <remarks>
    /// A server that served many requests before a restart reads many events here, before it
    /// listens, so the three fields are picked out of each line directly; a line whose values hold
    /// escapes (never written for ids, times and the nonces clients send in practice) is parsed in
    /// full instead.
    /// </remarks>
    public int SeedFrom(AuditTrail trail)
    {
        var since = time.GetUtcNow() - SeedRetention;
        var seeded = 0;
        foreach (var line in trail.ReadRawLines(since, null))
        {
            if (!TryScan(line, out var eventTime, out var accessKeyId, out var nonce))
            {
                continue;
            }

            if (eventTime >= since && accessKeyId is not null && nonce is not null && _nonces.TryAdd(Key(accessKeyId, nonce), MinuteAfter(eventTime + SeedRetention)))
            {
                seeded++;
            }
        }

        return seeded;
    }

    // The event's time, its caller's access key id and its SignatureNonce (null when the event has
    // none: only server calls carry one). False for a line that is not a readable event.
    internal static bool TryScan(string line, out DateTimeOffset eventTime, out string? accessKeyId, out string? nonce)
    {
        eventTime = default;
        accessKeyId = null;
        nonce = null;
        var nonceAt = line.IndexOf(NonceMember, StringComparison.Ordinal);
        if (nonceAt < 0)
        {
            return false;   // no nonce: not a server call (the common case for CLI events), nothing to parse
        }

        // In JSON text a quote inside a value is escaped, so an unescaped "name":" is a member name.
        // The members looked for are the first of their name in the event's fixed layout: eventTime
        // before any caller-supplied text, accessKeyId in userIdentity, the nonce in additionalEventData.
        var identityAt = line.IndexOf("\"userIdentity\":{", StringComparison.Ordinal);
        var extraAt = line.IndexOf("\"additionalEventData\":{", StringComparison.Ordinal);
        if (Value(line, "\"eventTime\":\"", 0) is { } timeText && identityAt > 0 && extraAt > identityAt &&
            Value(line, NonceMember, extraAt) is { } nonceText &&
            DateTimeOffset.TryParseExact(timeText, "yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture,
                System.Globalization.DateTimeStyles.AssumeUniversal, out eventTime))
        {
            // Only inside userIdentity: it ends before requestParameters (or additionalEventData).
            var parametersAt = line.IndexOf("\"requestParameters\":{", identityAt, StringComparison.Ordinal);
            var identityEnd = parametersAt > identityAt && parametersAt < extraAt ? parametersAt : extraAt;
            var keyAt = line.IndexOf("\"accessKeyId\":\"", identityAt, identityEnd - identityAt, StringComparison.Ordinal);
            accessKeyId = keyAt < 0 ? null : Value(line, "\"accessKeyId\":\"", keyAt);
            if (keyAt >= 0 && accessKeyId is null)
            {
                return FullParse(line, out eventTime, out accessKeyId, out nonce);   // an escape in the key id
            }

            nonce = nonceText;
            return true;
        }

        // Escapes in a value, or an unexpected layout: the full parser decides.
        return FullParse(line, out eventTime, out accessKeyId, out nonce);
    }

    private static bool FullParse(string line, out DateTimeOffset eventTime, out string? accessKeyId, out string? nonce)
    {
        eventTime = default;
        accessKeyId = null;
        nonce = null;
        try
        {
            var auditEvent = AuditJsonReader.Parse(line);
            eventTime = auditEvent.EventTime;
            accessKeyId = auditEvent.UserIdentity.AccessKeyId;
            return auditEvent.AdditionalEventData.TryGetValue(KmsGateway.SignatureNonceField, out nonce);
        }
        catch (Exception e) when (e is JsonException or FormatException or KeyNotFoundException or InvalidOperationException)
        {
            return false;   // a damaged line is for `tde audit verify` to report; it holds no nonce we can use
        }
    }

    private const string NonceMember = "\"" + KmsGateway.SignatureNonceField + "\":\"";

    // The string value of the first member named by `member` (`"name":"`) at or after `from`; null
    // when absent or when the value holds an escape (then the caller parses the line in full).
    private static string? Value(string line, string member, int from)
    {
        var at = line.IndexOf(member, from, StringComparison.Ordinal);
        if (at < 0)
        {
            return null;
        }

        var start = at + member.Length;
        var end = line.IndexOfAny(['"', '\\'], start);
        return end < 0 || line[end] == '\\' ? null : line[start..end];
    }

    // XXH3 (64 bits) under this guard's random seed, over the key id's length and the UTF-16 code
    // units of both strings (exact for any string, lone surrogates included). Not a cryptographic
    // hash: a collision would only refuse one fresh request, and arranging one would take both the
    // seed and the victim's nonce. SHA-256 measured about 0.9 µs a request (docs/benchmarks.md).
    internal ulong Key(string accessKeyId, string nonce)
    {
        var length = sizeof(int) + (accessKeyId.Length + nonce.Length) * sizeof(char);
        var rented = length > 512 ? ArrayPool<byte>.Shared.Rent(length) : null;
        var input = rented is null ? stackalloc byte[length] : rented.AsSpan(0, length);
        BinaryPrimitives.WriteInt32LittleEndian(input, accessKeyId.Length);
        MemoryMarshal.AsBytes(accessKeyId.AsSpan()).CopyTo(input[sizeof(int)..]);
        MemoryMarshal.AsBytes(nonce.AsSpan()).CopyTo(input[(sizeof(int) + accessKeyId.Length * sizeof(char))..]);
        var key = System.IO.Hashing.XxHash3.HashToUInt64(input, _seed);
        if (rented is not null)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }

        return key;
    }

    private readonly long _seed = BitConverter.ToInt64(RandomNumberGenerator.GetBytes(8));

    private void Sweep(DateTimeOffset now)
    {
        var last = Interlocked.Read(ref _lastSweep);
        if (now.UtcTicks - last < TimeSpan.TicksPerMinute || Interlocked.CompareExchange(ref _lastSweep, now.UtcTicks, last) != last)
        {
            return;
        }

        _nonces.Sweep(Minute(now));
    }

    // Minutes since 1970: the one an instant falls in, and the first that starts at or after it (a
    // nonce is kept at least until the end of the minute it may be forgotten in).
    private static uint Minute(DateTimeOffset at) => (uint)Math.Clamp((at.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / TimeSpan.TicksPerMinute, 0, uint.MaxValue);

    private static uint MinuteAfter(DateTimeOffset at) => Minute(at.AddTicks(TimeSpan.TicksPerMinute - 1));
}
