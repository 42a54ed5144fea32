using System.Globalization;
using System.Text;
using TdeEngine.Audit;

namespace TdeEngine.Cli.Commands;

/// <summary><c>tde audit verify | LookupEvents | export | checkpoint | prune</c>.</summary>
internal static class AuditCommand
{
    private const string Usage = """
        Usage:
          tde audit verify                      Prove the hash chain and the signed checkpoints, or name the first bad event
          tde audit LookupEvents [--KeyId ID] [--EventName NAME] [--Principal NAME] [--StartTime ISO] [--EndTime ISO] [--MaxResults N] [--json]
          tde audit export --out FILE           The trail as JSON Lines
          tde audit checkpoint                  Write a signed checkpoint of the end of the trail
          tde audit prune --Before ISO          Remove sealed segments whose events are all older (the trail must verify)

        The active file is sealed as a segment at 64 MiB (TDE_AUDIT_SEGMENT_MB sets another size, 0 never).
        """;

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            stdout.Write(Usage);
            return args.Length == 0 ? 2 : 0;
        }

        var options = KmsCommand.ParseParameters(args.AsSpan(1).ToArray().Where(a => a != "--json").ToArray());
        var json = args.Contains("--json");
        using var services = CliServices.Open();
        var trail = services.Audit;
        switch (args[0])
        {
            case "verify":
                var result = trail.Verify();
                (result.Intact ? stdout : stderr).WriteLine(result.Message);
                return result.Intact ? 0 : 1;
            case "checkpoint":
                trail.Checkpoint();
                stdout.WriteLine("checkpoint written");
                return 0;
            case "export":
                var output = options.GetValueOrDefault("out") ?? throw new CliUsageException("tde audit export needs --out FILE.");
                File.WriteAllLines(output, trail.ReadRawLines(), new UTF8Encoding(false));
                stdout.WriteLine($"exported to {Path.GetFullPath(output)}");
                return 0;
            case "LookupEvents":
                return Lookup(trail, options, json, stdout);
            case "prune":
                var before = options.TryGetValue("Before", out var b) && DateTimeOffset.TryParse(b, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var parsed)
                    ? parsed
                    : throw new CliUsageException("tde audit prune needs --Before TIME (ISO 8601, for example 2026-11-01T00:00:00Z).");
                try
                {
                    stdout.WriteLine(trail.Prune(before).Message);
                    return 0;
                }
                catch (InvalidOperationException e)
                {
                    stderr.WriteLine(e.Message);
                    return 1;
                }
            default:
                throw new CliUsageException($"unknown 'tde audit' command '{args[0]}'.\n{Usage}");
        }
    }

    private static int Lookup(AuditTrail trail, Dictionary<string, string> options, bool json, TextWriter stdout)
    {
        var start = options.TryGetValue("StartTime", out var s) ? DateTimeOffset.Parse(s, CultureInfo.InvariantCulture) : DateTimeOffset.MinValue;
        var end = options.TryGetValue("EndTime", out var e) ? DateTimeOffset.Parse(e, CultureInfo.InvariantCulture) : DateTimeOffset.MaxValue;
        var max = options.TryGetValue("MaxResults", out var m) ? int.Parse(m, CultureInfo.InvariantCulture) : 50;
        var events = trail.ReadRawLines(start == DateTimeOffset.MinValue ? null : start, end == DateTimeOffset.MaxValue ? null : end)
            .Select(line => (Line: line, Event: Audit.AuditJsonReader.Parse(line)))
            .Where(x => x.Event.EventTime >= start && x.Event.EventTime <= end)
            .Where(x => !options.TryGetValue("EventName", out var name) || x.Event.EventName == name)
            .Where(x => !options.TryGetValue("Principal", out var who) || x.Event.UserIdentity.UserName == who || x.Event.UserIdentity.PrincipalId == who)
            .Where(x => !options.TryGetValue("KeyId", out var key) || x.Event.AdditionalEventData.GetValueOrDefault("keyId") == key ||
                        x.Event.RequestParameters.GetValueOrDefault("KeyId") == key)
            .Reverse().Take(max).Reverse().ToList();
        if (json)
        {
            stdout.Write("{\"Events\":[");
            stdout.Write(string.Join(",", events.Select(x => x.Line)));
            stdout.WriteLine($"],\"StartTime\":\"{(start == DateTimeOffset.MinValue ? "" : start.ToString("O", CultureInfo.InvariantCulture))}\",\"EndTime\":\"{(end == DateTimeOffset.MaxValue ? "" : end.ToString("O", CultureInfo.InvariantCulture))}\"}}");
            return 0;
        }

        foreach (var (_, ev) in events)
        {
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"#{ev.EventSequence} {ev.EventTime:yyyy-MM-ddTHH:mm:ss.fffZ} {ev.EventName,-28} {ev.UserIdentity.UserName,-16} {ev.AdditionalEventData.GetValueOrDefault("decision"),-12} {ev.ErrorCode ?? "OK",-24} {ev.AdditionalEventData.GetValueOrDefault("keyId")}"));
        }

        return 0;
    }
}
