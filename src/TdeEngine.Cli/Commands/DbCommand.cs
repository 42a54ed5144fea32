using System.Globalization;
using System.Text.Json;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Sqlite;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Cli.Commands;

/// <summary><c>tde db ...</c>: create, encrypt, decrypt, inspect and query TDE databases on the embedded KMS.</summary>
internal static class DbCommand
{
    private const string Usage = """
        Usage:
          tde db create FILE [--key KEY] [--cipher aes-256-gcm|aegis-256] [--page-size N]
          tde db encrypt PLAIN_FILE [--key KEY] [--cipher C] [--out FILE]     (in place without --out)
          tde db decrypt FILE --out PLAIN_FILE
          tde db backup FILE --out FILE [--key KEY]                          (online: a verified TDE copy under a DEK of its own)
          tde db status FILE [--json]
          tde db verify FILE [--json]                                        (authenticate every page; exit 1 if any fails)
          tde db rewrap FILE [--key KEY]                                     (DEKs under KEY's current version; only the envelope changes)
          tde db rekey FILE [--batch-pages N]                                (a new DEK; every page re-encrypted online; run again to resume)
          tde db sql FILE [SQL]                                              (SQL from stdin when absent)
        KEY is a KMS key id, ARN or alias (default alias/acs/rds). The KMS lives under $TDE_HOME.
        """;

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (CommandLine.Help(args, Usage, stdout, stderr) is { } exit)
        {
            return exit;
        }

        var verb = args[0];
        var rest = args.AsSpan(1);
        // Every option a verb does not take is refused: a typo such as '--ot' must not turn
        // 'encrypt --out COPY' into an in-place encryption, nor '--kye' a re-wrap under the default key.
        var line = verb switch
        {
            "create" => CommandLine.Parse(rest, Usage, ["key", "cipher", "page-size"]),
            "encrypt" => CommandLine.Parse(rest, Usage, ["key", "cipher", "out"]),
            "decrypt" => CommandLine.Parse(rest, Usage, ["out"]),
            "backup" => CommandLine.Parse(rest, Usage, ["out", "key"]),
            "status" or "verify" => CommandLine.Parse(rest, Usage, [], "json"),
            "rewrap" => CommandLine.Parse(rest, Usage, ["key"]),
            "rekey" => CommandLine.Parse(rest, Usage, ["batch-pages"]),
            // SQL is taken verbatim (it may hold '--' comments): every word after FILE.
            "sql" => null,
            _ => throw new CliUsageException($"unknown 'tde db' command '{verb}'.\n{Usage}"),
        };
        var file = line is null
            ? (rest.Length > 0 ? rest[0] : throw new CliUsageException($"missing FILE.\n{Usage}"))
            : line.Operand(0, "FILE");
        line?.AtMostOperands(1);
        if (verb == "status")
        {
            return Status(file, line!.Has("json"), stdout, stderr);
        }

        var pageSize = line?.Get("page-size") is { } pageText
            ? int.TryParse(pageText, NumberStyles.None, CultureInfo.InvariantCulture, out var size) && size is >= 1024 and <= 65536 && int.IsPow2(size)
                ? size
                : throw line.Usage($"--page-size must be a power of two from 1024 to 65536, not '{pageText}'.")
            : (int?)null;
        var batchPages = line?.WholeNumber("batch-pages", 1, 1 << 20, absent: 256) ?? 256;
        var cipher = line?.Get("cipher") is { } name
            ? PageCipherSuites.TryParse(name) ?? throw line.Usage($"--cipher must be aes-256-gcm or aegis-256, not '{name}'.")
            : (PageCipherSuite?)null;
        var sqlWords = verb == "sql" && rest.Length > 1 ? string.Join(' ', rest[1..].ToArray()) : null;

        // The same composition as 'tde kms' (root key, HSM), so databases under HSM keys open here too.
        // Through the gateway, so the DEK calls are authorized and audited like 'tde kms' calls.
        using var services = CliServices.Open();
        TdeSqlite.Register(services.Gateway, () => services.RootContext with { RequestId = KmsCallContext.NewRequestId() });
        return CliErrors.Run(stderr, () =>
        {
            switch (verb)
            {
                case "create":
                    TdeDatabases.Create(file, line!.Get("key"), cipher, pageSize);
                    stdout.WriteLine($"created {Path.GetFullPath(file)}");
                    return 0;
                case "encrypt":
                    TdeDatabases.Encrypt(file, line!.Get("out"), line.Get("key"), cipher);
                    stdout.WriteLine($"encrypted {Path.GetFullPath(line.Get("out") ?? file)}");
                    return 0;
                case "decrypt":
                    var output = line!.Required("out");
                    TdeDatabases.Decrypt(file, output);
                    stdout.WriteLine($"decrypted to {Path.GetFullPath(output)}");
                    return 0;
                case "backup":
                    var copy = TdeDatabases.Backup(file, line!.Required("out"), line.Get("key"));
                    var copied = TdeDatabases.Status(copy.Path);
                    stdout.WriteLine($"backed up to {copy.Path}: {copy.PageCount} page{(copy.PageCount == 1 ? "" : "s")}, verified; its own DEK, wrapped by {copied.KmsKeyArn}");
                    return 0;
                case "sql":
                    return Sql(file, sqlWords ?? Console.In.ReadToEnd(), stdout, stderr);
                case "verify":
                    return Verify(file, line!.Has("json"), stdout, stderr);
                case "rekey":
                    var lastReport = DateTime.MinValue;
                    var finished = false;
                    var rekeyed = TdeDatabases.Rekey(file, p =>
                    {
                        // The last progress report can come more than once: the line that says "all done" is printed once.
                        var done = p.PagesDone == p.PagesTotal;
                        if ((done && !finished) || (!done && DateTime.UtcNow - lastReport > TimeSpan.FromSeconds(1)))
                        {
                            finished |= done;
                            lastReport = DateTime.UtcNow;
                            stdout.WriteLine($"{(p.Resumed ? "resumed: " : "")}{p.PagesDone}/{p.PagesTotal} pages checked, {p.PagesRewritten} rewritten under DEK version {p.DekVersion}");
                        }
                    }, batchPages);
                    stdout.WriteLine($"re-encrypted {rekeyed.Path}: every page is under DEK version {rekeyed.ActiveDekVersion}, the only DEK in its envelope");
                    return 0;
                default:
                    var rewrapped = TdeDatabases.Rewrap(file, line!.Get("key"));
                    stdout.WriteLine($"re-wrapped {rewrapped.Path}: its DEKs are now wrapped by {rewrapped.KmsKeyArn} (current version)");
                    return 0;
            }
        });
    }

    private static int Sql(string file, string sql, TextWriter stdout, TextWriter stderr)
    {
        if (!File.Exists(file))
        {
            return CliErrors.Print(stderr, TdeStorageException.Codes.NotTdeDatabase, Directory.Exists(file)
                ? TdeStorageException.NoDatabaseFile(file).Message
                : $"'{file}' does not exist. Create it with 'tde db create {file}'.");
        }

        // A file: URI, so that ATTACH and VACUUM INTO take URIs ('file:copy.db?cipher=aegis-256').
        using var connection = new SqliteConnection(TdeSqlite.UriConnectionString(file, SqliteOpenMode.ReadWrite));
        return TdeSqlite.Explain(() =>
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = sql;
            using var reader = command.ExecuteReader();
            do
            {
                while (reader.Read())
                {
                    var values = new string[reader.FieldCount];
                    for (var i = 0; i < values.Length; i++)
                    {
                        values[i] = reader.IsDBNull(i) ? "" : reader.GetValue(i) switch
                        {
                            byte[] blob => "x'" + Convert.ToHexStringLower(blob) + "'",
                            double d => d.ToString("R", CultureInfo.InvariantCulture),
                            var v => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
                        };
                    }

                    stdout.WriteLine(string.Join('|', values));
                }
            }
            while (reader.NextResult());

            return 0;
        });
    }

    private static int Verify(string file, bool json, TextWriter stdout, TextWriter stderr)
    {
        var result = TdeDatabases.Verify(file);
        if (json)
        {
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
            {
                w.WriteStartObject();
                w.WriteString("Path", result.Path);
                w.WriteNumber("PageCount", result.PageCount);
                w.WriteStartArray("BadPages");
                foreach (var page in result.BadPages)
                {
                    w.WriteNumberValue(page);
                }

                w.WriteEndArray();
                if (result.HeaderPageCount is { } headerPages)
                {
                    w.WriteNumber("HeaderPageCount", headerPages);
                }
                else
                {
                    w.WriteNull("HeaderPageCount");
                }

                if (result.IntegrityCheck is null)
                {
                    w.WriteNull("IntegrityCheck");
                }
                else
                {
                    w.WriteString("IntegrityCheck", result.IntegrityCheck);
                }

                w.WriteBoolean("InterruptedTransaction", result.InterruptedTransaction);
                w.WriteBoolean("Intact", result.Intact);
                w.WriteEndObject();
            }

            stdout.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
        }
        else
        {
            (result.Intact ? stdout : stderr).WriteLine(result.Message);
        }

        return result.Intact ? 0 : 1;
    }

    private static int Status(string file, bool json, TextWriter stdout, TextWriter stderr)
    {
        TdeDatabaseStatus status;
        try
        {
            status = TdeDatabases.Status(file);
        }
        catch (TdeStorageException e)
        {
            return CliErrors.Print(stderr, e.Code, e.Message);
        }
        catch (IOException e)
        {
            return CliErrors.Print(stderr, "Tde.Failed", e.Message);
        }

        if (json)
        {
            using var output = Console.OpenStandardOutput();
            using (var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true }))
            {
                w.WriteStartObject();
                w.WriteString("Path", status.Path);
                w.WriteString("DatabaseId", status.DatabaseId);
                w.WriteString("KmsKeyArn", status.KmsKeyArn);
                w.WriteString("Cipher", PageCipherSuites.Name(status.Cipher));
                w.WriteNumber("PageSize", status.PageSize);
                w.WriteNumber("ReservedBytes", status.ReservedBytes);
                w.WriteNumber("PageCount", status.PageCount);
                w.WriteBoolean("Empty", status.Empty);
                w.WriteNumber("ActiveDekVersion", status.ActiveDekVersion);
                w.WriteNumber("EnvelopeSequence", status.EnvelopeSequence);
                w.WriteBoolean("EnvelopeAuthenticated", status.EnvelopeAuthenticated);
                w.WriteBoolean("EnvelopeDowngradeProtected", status.EnvelopeDowngradeProtected);
                w.WriteStartArray("Deks");
                foreach (var dek in status.Deks)
                {
                    w.WriteStartObject();
                    w.WriteNumber("Version", dek.Version);
                    w.WriteString("Cipher", PageCipherSuites.Name(dek.Cipher));
                    w.WriteNumber("SealsReserved", dek.SealsReserved);
                    w.WriteNumber("SealLimit", dek.SealLimit);
                    w.WriteBoolean("NearLimit", dek.NearLimit);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteStartObject("PagesPerDekVersion");
                foreach (var (version, count) in status.PagesPerDekVersion)
                {
                    w.WriteNumber(version.ToString(CultureInfo.InvariantCulture), count);
                }

                w.WriteEndObject();
                w.WriteEndObject();
            }

            output.Write("\n"u8);
            return 0;
        }

        stdout.WriteLine($"file:            {status.Path}");
        stdout.WriteLine($"database id:     {status.DatabaseId}");
        stdout.WriteLine($"KMS key:         {status.KmsKeyArn}");
        stdout.WriteLine($"cipher:          {PageCipherSuites.Name(status.Cipher)}");
        stdout.WriteLine($"page size:       {status.PageSize} bytes, {status.ReservedBytes} reserved");
        stdout.WriteLine($"pages:           {status.PageCount}{(status.PageCount > 0 ? "" : status.Empty
            ? " (an empty database: its first write transaction writes page 1)"
            : " (NOT marked empty: the file was truncated; run 'tde db verify')")}");
        stdout.WriteLine($"envelope:        {(status.EnvelopeDowngradeProtected
            ? "authenticated (HMAC under the DEK; checked on open, not by status)"
            : status.EnvelopeAuthenticated
                ? "authenticated (HMAC under the DEK; checked on open, not by status); its DEK predates this, so a rewrite in the old format is not detected until 'tde db rekey'"
                : "NOT authenticated (written by an earlier build); it gets a MAC on its next write (any write transaction, 'tde db rewrap' or 'tde db rekey')")}");
        stdout.WriteLine($"active DEK:      version {status.ActiveDekVersion}");
        foreach (var dek in status.Deks)
        {
            var limit = dek.SealLimit == ulong.MaxValue ? "no limit" : $"limit {dek.SealLimit:N0}";
            stdout.WriteLine($"  DEK {dek.Version}: {PageCipherSuites.Name(dek.Cipher)}, seals reserved {dek.SealsReserved:N0} ({limit}){(dek.NearLimit ? "  ROTATE SOON: tde db rekey" : "")}");
        }

        foreach (var (version, count) in status.PagesPerDekVersion)
        {
            stdout.WriteLine($"  pages under DEK {version}: {count}");
        }

        if (status.Deks.Count > 1)
        {
            var done = status.PagesPerDekVersion.GetValueOrDefault(status.ActiveDekVersion);
            stdout.WriteLine($"re-encryption:   running or interrupted, {done} of {status.PageCount} pages under DEK {status.ActiveDekVersion}; 'tde db rekey {status.Path}' finishes it");
        }

        return 0;
    }
}
