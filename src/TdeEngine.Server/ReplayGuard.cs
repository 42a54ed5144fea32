using System.Collections.Concurrent;
using System.Text.Json;
using TdeEngine.Audit;
using TdeEngine.Gateway;

namespace TdeEngine.Server;

/// <summary>
/// Rejects a request whose timestamp is more than <see cref="Window"/> from the server's clock, or
/// whose SignatureNonce was already seen within the window (a replay).
/// </summary>
/// <remarks>
/// Nonces are held in memory. Every request that passes this check has its nonce written to the
/// audit trail with its event (durable before the answer), and <see cref="SeedFrom"/> reads them
/// back when a server starts, so a restart does not reopen the window. Two servers running at the
/// same time on one home do not see each other's nonces.
/// </remarks>
internal sealed class ReplayGuard(TimeProvider time)
{
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(15);

    // A request stamped T is accepted from T - Window to T + Window, so a nonce must be kept for
    // two windows after it was seen.
    private static readonly TimeSpan Retention = Window + Window;

    private readonly ConcurrentDictionary<string, DateTimeOffset> _nonces = new(StringComparer.Ordinal);
    private long _lastSweep;

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
        return _nonces.TryAdd(Key(accessKeyId, nonce), now)
            ? null
            : ("SignatureNonceUsed", "The SignatureNonce was already used: this request is a replay. Sign each request with a new nonce.");
    }

    /// <summary>
    /// Remembers the nonces of the server events in <paramref name="trail"/> from the last two
    /// windows (older segments are not read). Returns how many were found.
    /// </summary>
    public int SeedFrom(AuditTrail trail)
    {
        var since = time.GetUtcNow() - Retention;
        var seeded = 0;
        foreach (var line in trail.ReadRawLines(since, null))
        {
            // Only server calls carry a nonce; skip the rest without parsing them.
            if (!line.Contains("\"" + KmsGateway.SignatureNonceField + "\"", StringComparison.Ordinal))
            {
                continue;
            }

            AuditEvent auditEvent;
            try
            {
                auditEvent = AuditJsonReader.Parse(line);
            }
            catch (Exception e) when (e is JsonException or FormatException or KeyNotFoundException or InvalidOperationException)
            {
                continue;   // a damaged line is for `tde audit verify` to report; it holds no nonce we can use
            }

            if (auditEvent.EventTime >= since && auditEvent.UserIdentity.AccessKeyId is { } accessKeyId &&
                auditEvent.AdditionalEventData.TryGetValue(KmsGateway.SignatureNonceField, out var nonce) &&
                _nonces.TryAdd(Key(accessKeyId, nonce), auditEvent.EventTime))
            {
                seeded++;
            }
        }

        return seeded;
    }

    private static string Key(string accessKeyId, string nonce) => accessKeyId + "|" + nonce;

    private void Sweep(DateTimeOffset now)
    {
        var last = Interlocked.Read(ref _lastSweep);
        if (now.UtcTicks - last < TimeSpan.TicksPerMinute || Interlocked.CompareExchange(ref _lastSweep, now.UtcTicks, last) != last)
        {
            return;
        }

        foreach (var (nonce, seen) in _nonces)
        {
            if (now - seen > Retention)
            {
                _nonces.TryRemove(nonce, out _);
            }
        }
    }
}
