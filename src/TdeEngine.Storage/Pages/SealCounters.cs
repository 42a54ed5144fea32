using System.Collections.Concurrent;
using TdeEngine.Storage.Envelope;

namespace TdeEngine.Storage.Pages;

/// <summary>One <see cref="SealCounter"/> per database and DEK version in this process.</summary>
internal static class SealCounters
{
    private static readonly ConcurrentDictionary<string, SealCounter> Counters = new(StringComparer.Ordinal);

    public static SealCounter For(DatabaseEnvelope envelope, string path)
    {
        var active = envelope.ActiveDek;
        var counter = Counters.GetOrAdd($"{envelope.DatabaseIdHex}/{active.Version}",
            _ => new SealCounter(path, active.SealsReserved, active.SealsReserved, PageCipherSuites.SealLimit(active.Suite)));
        counter.CatchUp(active.SealsReserved);
        return counter;
    }
}
