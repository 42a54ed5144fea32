using System.Collections.Concurrent;
using TdeEngine.Kms.Errors;

namespace TdeEngine.Kms.Instances;

/// <summary>
/// The computing Spec of a KMS instance: a token bucket per instance that admits <c>Spec</c>
/// cryptographic calls per second (with one second of burst). A call over the budget fails with
/// HTTP 429 <c>Rejected.Throttling</c>.
/// </summary>
/// <remarks>
/// Thread-safe. The budget is per process: the server is the place where it is meant to bind, since
/// it is where an instance's callers meet. Reads time from the <see cref="TimeProvider"/>.
/// </remarks>
internal sealed class InstanceThrottle
{
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);

    public InstanceThrottle(TimeProvider time) => _time = time;

    public void Acquire(string instanceId, int qps)
    {
        var bucket = _buckets.GetOrAdd(instanceId, static (_, state) => new Bucket(state.qps, state.now), (qps, now: _time.GetTimestamp()));
        if (!bucket.TryTake(qps, _time.GetTimestamp(), _time.TimestampFrequency))
        {
            throw KmsErrors.Throttling(instanceId, qps);
        }
    }

    private sealed class Bucket(int qps, long now)
    {
        private readonly Lock _lock = new();
        private double _tokens = qps;
        private long _last = now;

        public bool TryTake(int qps, long now, long frequency)
        {
            lock (_lock)
            {
                var elapsed = (double)(now - _last) / frequency;
                if (elapsed > 0)
                {
                    _tokens = Math.Min(qps, _tokens + (elapsed * qps));
                    _last = now;
                }

                if (_tokens < 1)
                {
                    return false;
                }

                _tokens -= 1;
                return true;
            }
        }
    }
}
