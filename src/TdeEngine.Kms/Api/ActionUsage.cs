using System.Text.RegularExpressions;

namespace TdeEngine.Kms.Api;

/// <summary>
/// The parameters an action takes, as its usage line names them (<c>--KeyId ID [--PageSize N]</c>):
/// the CLI refuses any other option, so a typo is not silently dropped. A test holds every handler to
/// its usage line: each parameter it reads must be named there.
/// </summary>
public static partial class ActionUsage
{
    /// <summary>The names in a usage line, without the leading <c>--</c>.</summary>
    public static IReadOnlySet<string> ParameterNames(string usage)
    {
        ArgumentNullException.ThrowIfNull(usage);
        return Option().Matches(usage).Select(m => m.Groups[1].Value).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>
    /// The declared name a mistyped one most likely meant: the same name in another case, or one at
    /// most two edits away; null when none is that close.
    /// </summary>
    public static string? Closest(string given, IEnumerable<string> declared)
    {
        ArgumentNullException.ThrowIfNull(given);
        ArgumentNullException.ThrowIfNull(declared);
        string? best = null;
        var bestDistance = 3;
        foreach (var name in declared)
        {
            var distance = string.Equals(name, given, StringComparison.OrdinalIgnoreCase) ? 0 : Distance(name.ToLowerInvariant(), given.ToLowerInvariant());
            if (distance < bestDistance)
            {
                (best, bestDistance) = (name, distance);
            }
        }

        return best;
    }

    // Levenshtein distance (names are short).
    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }

    [GeneratedRegex(@"--([A-Za-z][A-Za-z0-9]*)")]
    private static partial Regex Option();
}
