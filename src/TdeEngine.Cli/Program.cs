using TdeEngine.Cli.Commands;

namespace TdeEngine.Cli;

/// <summary>The <c>tde</c> command line: a host that only composes the libraries.</summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.Out.Write(Usage);
            return args.Length == 0 ? 2 : 0;
        }

        try
        {
            return args[0] switch
            {
                "kms" => KmsCommand.Run(args[1..], Console.Out, Console.Error),
                "db" => DbCommand.Run(args[1..], Console.Out, Console.Error),
                "disk" => DiskCommand.Run(args[1..], Console.Out, Console.Error),
                "oss" => OssCommand.Run(args[1..], Console.Out, Console.Error),
                "ram" => RamCommand.Run(args[1..], Console.Out),
                "audit" => AuditCommand.Run(args[1..], Console.Out, Console.Error),
                "demo" => DemoCommand.Run(args[1..], Console.Out),
                "version" or "--version" => Version(),
                _ => Unknown(args[0]),
            };
        }
        catch (CliUsageException e)
        {
            Console.Error.WriteLine($"tde: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or InvalidDataException or InvalidOperationException
                                      or TdeEngine.Kms.Hsm.HsmException or Microsoft.Data.Sqlite.SqliteException or IOException
                                      or UnauthorizedAccessException)
        {
            // The state under $TDE_HOME or the HSM could not be opened: say why, without a stack trace.
            Console.Error.WriteLine($"tde: {e.Message}");
            return 1;
        }
    }

    private static int Version()
    {
        Console.Out.WriteLine(typeof(Program).Assembly.GetName().Version?.ToString() ?? "0.0.0");
        return 0;
    }

    private static int Unknown(string command)
    {
        Console.Error.WriteLine($"tde: unknown command '{command}'.");
        Console.Error.Write(Usage);
        return 2;
    }

    private const string Usage = """
        tde: transparent data encryption with its own KMS

        Usage:
          tde demo                         Run the walkthrough on embedded defaults ($TDE_HOME, default ./.tde)
          tde kms <Action> --<Param> <v>   Call a KMS action, Alibaba KMS OpenAPI 2016-01-20 style
          tde kms --help                   List the KMS actions and their parameters
          tde kms serve [--port N] [--host IP] [--cert FILE.pfx --cert-password-env VAR]   The KMS server (docs/server.md)
          tde ram <Action> --<Param> <v>   RAM: users, access keys, policies (tde ram --help)
          tde audit verify|LookupEvents|export|checkpoint|prune   The hash-chained audit trail of every call (tde audit --help)
          tde db create FILE [--key KEY] [--cipher aes-256-gcm|aegis-256] [--page-size N]
          tde db encrypt PLAIN_FILE [--key KEY] [--cipher C] [--out FILE]
          tde db decrypt FILE --out PLAIN_FILE
          tde db status FILE [--json]      Envelope, page size, reserve, pages per DEK version (no key needed)
          tde db sql FILE [SQL]            Run SQL through the TDE VFS (statements from stdin when no SQL)
          tde db backup|verify|rewrap|rekey FILE ...   Copy, check, re-wrap or re-encrypt a TDE database (tde db --help)
          tde disk create|inspect|write|read|snapshot|copy|rewrap IMAGE ...   ECS-style encrypted disk images (tde disk --help)
          tde oss mb|encryption|put|get|head|ls|rm|rewrap DIR ...        OSS-style buckets with server-side encryption (tde oss --help)
          tde version                      Print the version

        State lives under $TDE_HOME (default ./.tde).

        """;
}
