using System.Globalization;
using System.Text;
using TdeEngine.Audit;
using TdeEngine.Kms.Errors;

namespace TdeEngine.Cli.Commands;

/// <summary><c>tde audit verify | LookupEvents | export | checkpoint | prune</c>.</summary>
/// <remarks>
/// The arguments are read and checked before anything under $TDE_HOME is opened, so a mistyped
/// command creates no root key or key store; a mistake exits 2, a refusal 1.
/// </remarks>
internal static class AuditCommand
{
    private const string Usage = """
        Usage:
          tde audit verify                      Prove the hash chain and the signed checkpoints, or name the first bad event
          tde audit LookupEvents [--KeyId ID|ALIAS|ARN] [--EventName NAME] [--Principal NAME] [--StartTime ISO] [--EndTime ISO]
                                 [--MaxResults 1-50] [--NextToken TOKEN] [--json]
                                                The newest matching events (default 50); NextToken pages back in time
          tde audit export --out FILE           The trail as JSON Lines
          tde audit checkpoint                  Write a signed checkpoint of the end of the trail and print it (keep it off-host)
          tde audit prune --Before ISO          Remove sealed segments whose events are all older (the trail must verify)

        The active file is sealed as a segment at 64 MiB (TDE_AUDIT_SEGMENT_MB sets another size, 0 never).

        """;

    private static readonly string[] LookupOptions = ["KeyId", "EventName", "Principal", "StartTime", "EndTime", "MaxResults", "NextToken"];

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (CommandLine.Help(args, Usage, stdout, stderr) is { } help)
        {
            return help;
        }

        var command = args[0];
        var line = command switch
        {
            "verify" or "checkpoint" => CommandLine.Parse(args.AsSpan(1), Usage, []),
            "export" => CommandLine.Parse(args.AsSpan(1), Usage, ["out"]),
            "prune" => CommandLine.Parse(args.AsSpan(1), Usage, ["Before"]),
            "LookupEvents" => CommandLine.Parse(args.AsSpan(1), Usage, LookupOptions, "json"),
            _ => throw new CliUsageException($"unknown 'tde audit' command '{command}'.\n{Usage}"),
        };
        line.AtMostOperands(0);
        return command switch
        {
            "verify" => CliErrors.Run(stderr, () => Verify(stdout, stderr)),
            "checkpoint" => CliErrors.Run(stderr, () => Checkpoint(stdout)),
            "export" => Export(line.Get("out") ?? throw line.Usage("tde audit export needs --out FILE."), stdout, stderr),
            "prune" => Prune(line, stdout, stderr),
            _ => Lookup(LookupQuery.From(line), stdout, stderr),
        };
    }

    private static int Verify(TextWriter stdout, TextWriter stderr)
    {
        using var services = CliServices.Open();
        var result = services.Audit.Verify();
        (result.Intact ? stdout : stderr).WriteLine(result.Message);
        return result.Intact ? 0 : 1;
    }

    private static int Checkpoint(TextWriter stdout)
    {
        using var services = CliServices.Open();
        var record = services.Audit.Checkpoint();
        stdout.WriteLine(record is null ? "The trail holds no event yet: nothing to sign." : record);
        return 0;
    }

    private static int Export(string output, TextWriter stdout, TextWriter stderr) => CliErrors.Run(stderr, () =>
    {
        using var services = CliServices.Open();
        OutputFile.Write(output, stream =>
        {
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(((FileStream)stream).Name, UnixFileMode.UserRead | UnixFileMode.UserWrite);   // events hold encryption contexts
            }

            using var writer = new StreamWriter(stream, new UTF8Encoding(false));
            foreach (var line in services.Audit.ReadRawLines())
            {
                writer.Write(line);
                writer.Write('\n');
            }
        });
        stdout.WriteLine($"exported to {Path.GetFullPath(output)}");
        return 0;
    });

    private static int Prune(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var before = line.Get("Before") is { } b && TryParseTime(b, out var parsed)
            ? parsed
            : throw line.Usage("tde audit prune needs --Before TIME (ISO 8601, for example 2026-11-01T00:00:00Z).");
        return CliErrors.Run(stderr, () =>
        {
            using var services = CliServices.Open();
            try
            {
                stdout.WriteLine(services.Audit.Prune(before).Message);
                return 0;
            }
            catch (InvalidOperationException e)
            {
                stderr.WriteLine(e.Message);
                return 1;
            }
        });
    }

    internal static bool TryParseTime(string text, out DateTimeOffset time) =>
        DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out time);

    private static int Lookup(LookupQuery query, TextWriter stdout, TextWriter stderr) => CliErrors.Run(stderr, () =>
    {
        using var services = CliServices.Open();
        var keyIds = query.KeyId is { } key ? KeyIds(services, key) : null;
        // The newest MaxResults matches older than the token, kept in a window while reading forward.
        var page = new Queue<(string Line, AuditEvent Event)>(query.MaxResults + 1);
        var more = false;
        foreach (var raw in services.Audit.ReadRawLines(query.Start, query.End))
        {
            AuditEvent e;
            try
            {
                e = AuditJsonReader.Parse(raw);
            }
            catch (Exception ex) when (ex is System.Text.Json.JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new InvalidDataException("The trail holds a line that is not an audit event: run 'tde audit verify' to find it.");
            }

            if (e.EventSequence >= query.Before ||
                (query.Start is { } start && e.EventTime < start) || (query.End is { } end && e.EventTime > end) ||
                (query.EventName is { } name && e.EventName != name) ||
                (query.Principal is { } who && e.UserIdentity.UserName != who && e.UserIdentity.PrincipalId != who) ||
                (keyIds is not null && !MatchesKey(e, keyIds)))
            {
                continue;
            }

            page.Enqueue((raw, e));
            if (page.Count > query.MaxResults)
            {
                page.Dequeue();
                more = true;
            }
        }

        var nextToken = more ? LookupQuery.Token(page.Peek().Event.EventSequence) : "";
        if (query.Json)
        {
            stdout.Write("{\"Events\":[");
            stdout.Write(string.Join(",", page.Select(x => x.Line)));
            stdout.WriteLine($"],\"StartTime\":\"{query.Start?.ToString("O", CultureInfo.InvariantCulture)}\",\"EndTime\":\"{query.End?.ToString("O", CultureInfo.InvariantCulture)}\",\"NextToken\":\"{nextToken}\"}}");
            return 0;
        }

        foreach (var (_, ev) in page)
        {
            stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"#{ev.EventSequence} {ev.EventTime:yyyy-MM-ddTHH:mm:ss.fffZ} {ev.EventName,-28} {ev.UserIdentity.UserName,-16} {ev.AdditionalEventData.GetValueOrDefault("decision"),-12} {ev.ErrorCode ?? "OK",-24} {ev.AdditionalEventData.GetValueOrDefault("keyId")}"));
        }

        if (more)
        {
            stdout.WriteLine($"NextToken: {nextToken}");
        }

        return 0;
    });

    // What --KeyId names: the key id an alias or ARN resolves to now, and the text itself (events of
    // a key since deleted, or calls that named an alias that no longer exists).
    private static HashSet<string> KeyIds(CliServices services, string key)
    {
        var ids = new HashSet<string>(StringComparer.Ordinal) { key };
        try
        {
            ids.Add(services.Kms.DescribeKey(services.RootContext, key).KeyId);
        }
        catch (KmsException)
        {
            // Not a key or alias the KMS knows now: match the text as given.
        }

        return ids;
    }

    // An event is about a key when the key it used (additionalEventData keyId, or its resource ARN)
    // or the KeyId it was called with is one of the ids.
    private static bool MatchesKey(AuditEvent e, HashSet<string> ids) =>
        (e.AdditionalEventData.TryGetValue("keyId", out var used) && ids.Contains(used)) ||
        (e.RequestParameters.TryGetValue("KeyId", out var asked) && ids.Contains(asked)) ||
        (e.AdditionalEventData.TryGetValue("resource", out var resource) && resource.LastIndexOf(":key/", StringComparison.Ordinal) is var at and >= 0 &&
         ids.Contains(resource[(at + 5)..]));

    /// <summary>The checked arguments of <c>tde audit LookupEvents</c>.</summary>
    private sealed record LookupQuery(string? KeyId, string? EventName, string? Principal, DateTimeOffset? Start, DateTimeOffset? End, int MaxResults, long Before, bool Json)
    {
        private const string TokenPrefix = "tde-lookup-v1:";

        public static LookupQuery From(CommandLine line)
        {
            DateTimeOffset? Time(string name) => line.Get(name) is not { } text ? null
                : TryParseTime(text, out var time) ? time
                : throw line.Usage($"--{name} must be a time in ISO 8601, for example 2026-11-01T00:00:00Z, not '{text}'.");

            var start = Time("StartTime");
            var end = Time("EndTime");
            if (start > end)
            {
                throw line.Usage("--EndTime is before --StartTime.");
            }

            var max = line.WholeNumber("MaxResults", 1, 50, absent: 50);

            var before = long.MaxValue;
            if (line.Get("NextToken") is { } token && !TryReadToken(token, out before))
            {
                throw line.Usage("--NextToken must be a NextToken printed by an earlier tde audit LookupEvents.");
            }

            return new LookupQuery(line.Get("KeyId"), line.Get("EventName"), line.Get("Principal"), start, end, max, before, line.Has("json"));
        }

        // Opaque to the caller: base64url of the sequence of the oldest event returned so far.
        public static string Token(long sequence) =>
            Convert.ToBase64String(Encoding.ASCII.GetBytes(TokenPrefix + sequence.ToString(CultureInfo.InvariantCulture))).TrimEnd('=').Replace('+', '-').Replace('/', '_');

        private static bool TryReadToken(string token, out long sequence)
        {
            sequence = 0;
            var base64 = token.Replace('-', '+').Replace('_', '/');
            base64 += new string('=', (4 - base64.Length % 4) % 4);
            var bytes = new byte[base64.Length];
            if (!Convert.TryFromBase64String(base64, bytes, out var length))
            {
                return false;
            }

            var text = Encoding.ASCII.GetString(bytes, 0, length);
            return text.StartsWith(TokenPrefix, StringComparison.Ordinal) &&
                   long.TryParse(text.AsSpan(TokenPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out sequence) && sequence > 0;
        }
    }
}
