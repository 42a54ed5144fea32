using System.Collections.Concurrent;

namespace TdeEngine.Server;

/// <summary>
/// Rejects a request whose timestamp is more than <see cref="Window"/> from the server's clock, or
/// whose SignatureNonce was already seen within the window (a replay).
/// </summary>
internal sealed class ReplayGuard(TimeProvider time)
{
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(15);

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
        return _nonces.TryAdd(accessKeyId + "|" + nonce, now)
            ? null
            : ("SignatureNonceUsed", "The SignatureNonce was already used: this request is a replay. Sign each request with a new nonce.");
    }

    private void Sweep(DateTimeOffset now)
    {
        var last = Interlocked.Read(ref _lastSweep);
        if (now.UtcTicks - last < TimeSpan.TicksPerMinute || Interlocked.CompareExchange(ref _lastSweep, now.UtcTicks, last) != last)
        {
            return;
        }

        foreach (var (nonce, seen) in _nonces)
        {
            if (now - seen > Window + Window)
            {
                _nonces.TryRemove(nonce, out _);
            }
        }
    }
}
