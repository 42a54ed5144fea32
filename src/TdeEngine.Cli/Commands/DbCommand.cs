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
          tde db status FILE [--json]
          tde db verify FILE [--json]                                        (authenticate every page; exit 1 if any fails)
          tde db rewrap FILE [--key KEY]                                     (DEKs under KEY's current version; only the envelope changes)
          tde db rekey FILE [--batch-pages N]                                (a new DEK; every page re-encrypted online; run again to resume)
          tde db sql FILE [SQL]                                              (SQL from stdin when absent)
        KEY is a KMS key id, ARN or alias (default alias/acs/rds). The KMS lives under $TDE_HOME.
        """;

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Length < 2 || args[0] is "-h" or "--help")
        {
            stdout.Write(Usage);
            return args.Length == 0 || args[0] is "-h" or "--help" ? 0 : 2;
        }

        var verb = args[0];
        var file = args[1];
        var (options, positional) = ParseOptions(args.AsSpan(2));
        if (verb == "status")
        {
            return Status(file, options.ContainsKey("json"), stdout, stderr);
        }

        // The same composition as 'tde kms' (root key, HSM), so databases under HSM keys open here too.
        // Through the gateway, so the DEK calls are authorized and audited like 'tde kms' calls.
        using var services = CliServices.Open();
        var kms = services.Kms;
        TdeSqlite.Register(services.Gateway, () => services.RootContext with { RequestId = KmsCallContext.NewRequestId() });
        return CliErrors.Run(stderr, () =>
        {
            switch (verb)
            {
                case "create":
                    TdeDatabases.Create(file, options.GetValueOrDefault("key"), Cipher(options), PageSize(options));
                    stdout.WriteLine($"created {Path.GetFullPath(file)}");
                    return 0;
                case "encrypt":
                    TdeDatabases.Encrypt(file, options.GetValueOrDefault("out"), options.GetValueOrDefault("key"), Cipher(options));
                    stdout.WriteLine($"encrypted {Path.GetFullPath(options.GetValueOrDefault("out") ?? file)}");
                    return 0;
                case "decrypt":
                    var output = options.GetValueOrDefault("out") ?? throw new CliUsageException("tde db decrypt needs --out PLAIN_FILE.");
                    TdeDatabases.Decrypt(file, output);
                    stdout.WriteLine($"decrypted to {Path.GetFullPath(output)}");
                    return 0;
                case "sql":
                    return Sql(file, positional.Count > 0 ? string.Join(' ', positional) : Console.In.ReadToEnd(), stdout, stderr);
                case "verify":
                    return Verify(file, options.ContainsKey("json"), stdout, stderr);
                case "rekey":
                    var batchPages = options.TryGetValue("batch-pages", out var batchText) ? int.Parse(batchText, CultureInfo.InvariantCulture) : 256;
                    var lastReport = DateTime.MinValue;
                    var rekeyed = TdeDatabases.Rekey(file, p =>
                    {
                        if (p.PagesDone == p.PagesTotal || DateTime.UtcNow - lastReport > TimeSpan.FromSeconds(1))
                        {
                            lastReport = DateTime.UtcNow;
                            stdout.WriteLine($"{(p.Resumed ? "resumed: " : "")}{p.PagesDone}/{p.PagesTotal} pages checked, {p.PagesRewritten} rewritten under DEK version {p.DekVersion}");
                        }
                    }, batchPages);
                    stdout.WriteLine($"re-encrypted {rekeyed.Path}: every page is under DEK version {rekeyed.ActiveDekVersion}, the only DEK in its envelope");
                    return 0;
                case "rewrap":
                    var rewrapped = TdeDatabases.Rewrap(file, options.GetValueOrDefault("key"));
                    stdout.WriteLine($"re-wrapped {rewrapped.Path}: its DEKs are now wrapped by {rewrapped.KmsKeyArn} (current version)");
                    return 0;
                default:
                    throw new CliUsageException($"unknown 'tde db' command '{verb}'.\n{Usage}");
            }
        });
    }

    private static int Sql(string file, string sql, TextWriter stdout, TextWriter stderr)
    {
        if (!File.Exists(file))
        {
            return CliErrors.Print(stderr, TdeStorageException.Codes.NotTdeDatabase, $"'{file}' does not exist. Create it with 'tde db create {file}'.");
        }

        using var connection = new SqliteConnection(TdeSqlite.ConnectionString(file, SqliteOpenMode.ReadWrite));
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
                if (result.IntegrityCheck is null)
                {
                    w.WriteNull("IntegrityCheck");
                }
                else
                {
                    w.WriteString("IntegrityCheck", result.IntegrityCheck);
                }

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
                w.WriteNumber("ActiveDekVersion", status.ActiveDekVersion);
                w.WriteNumber("EnvelopeSequence", status.EnvelopeSequence);
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
        stdout.WriteLine($"pages:           {status.PageCount}");
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

    private static PageCipherSuite? Cipher(Dictionary<string, string> options) =>
        options.TryGetValue("cipher", out var name) ? PageCipherSuites.Parse(name) : null;

    private static int? PageSize(Dictionary<string, string> options) =>
        options.TryGetValue("page-size", out var size) ? int.Parse(size, CultureInfo.InvariantCulture) : null;

    private static (Dictionary<string, string> Options, List<string> Positional) ParseOptions(ReadOnlySpan<string> args)
    {
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        var positional = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == "--json")
            {
                options["json"] = "";
            }
            else if (args[i].StartsWith("--", StringComparison.Ordinal))
            {
                if (i + 1 >= args.Length)
                {
                    throw new CliUsageException($"{args[i]} needs a value.");
                }

                options[args[i][2..]] = args[++i];
            }
            else
            {
                positional.Add(args[i]);
            }
        }

        return (options, positional);
    }
}
