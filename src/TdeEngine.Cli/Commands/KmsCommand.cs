using Microsoft.Extensions.Hosting;
using TdeEngine.Kms.Api;

namespace TdeEngine.Cli.Commands;

/// <summary>
/// <c>tde kms &lt;ApiName&gt; --&lt;Param&gt; value ...</c>, in the style of aliyun-cli: the same
/// <see cref="KmsApi"/> a server calls, and the response body exactly as the OpenAPI returns it.
/// </summary>
internal static class KmsCommand
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            PrintHelp(stdout);
            return args.Length == 0 ? 2 : 0;
        }

        var action = args[0];
        if (action == "serve")
        {
            return Serve(args.AsSpan(1).ToArray(), stdout);
        }

        var parameters = ParseParameters(args.AsSpan(1));
        if (HelpOrRefuseUnknownOptions("kms", action, parameters, KmsApi.Actions, stdout))
        {
            return 0;
        }

        using var services = CliServices.Open();
        var context = services.RootContext;
        using var response = services.Gateway.InvokeKms(context, action, parameters, indented: true);
        return WriteResponse(response, stdout);
    }

    // tde kms serve [--port N] [--host IP] [--cert FILE.pfx --cert-password-env VAR]
    private static int Serve(string[] args, TextWriter stdout)
    {
        // Before any socket exists in this process (docs/decisions.md: inline socket completions).
        TdeEngine.Server.KmsServer.PreferInlineSocketCompletions();
        const string ServeUsage = "Usage: tde kms serve [--port N] [--host IP] [--cert FILE.pfx --cert-password-env VAR]";
        // --help anywhere, as 'tde kms <Action> ... --help' (ParseParameters reads it without a value).
        var options = args is ["-h"] ? new Dictionary<string, string> { ["help"] = "" } : ParseParameters(args);
        if (options.ContainsKey("help"))
        {
            stdout.WriteLine(ServeUsage);
            stdout.WriteLine("Serves the Alibaba KMS, RAM and STS RPC APIs on 127.0.0.1:8080 by default (docs/server.md).");
            return 0;
        }

        if (options.Keys.FirstOrDefault(k => k is not ("port" or "host" or "cert" or "cert-password-env")) is { } unknown)
        {
            throw new CliUsageException($"unknown option '--{unknown}'. {ServeUsage}");
        }

        var port = 8080;
        if (options.TryGetValue("port", out var text) &&
            (!int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out port) || port > 65535))
        {
            throw new CliUsageException($"--port must be a TCP port from 0 (any free port) to 65535, not '{text}'.");
        }

        var host = options.GetValueOrDefault("host") ?? "127.0.0.1";
        if (!System.Net.IPAddress.TryParse(host, out _))
        {
            throw new CliUsageException($"--host must be an IP address to listen on (127.0.0.1, 0.0.0.0, ::1), not '{host}'.");
        }

        // Kestrel resolves a relative certificate path against the binary's folder, not the working directory.
        var certificate = options.GetValueOrDefault("cert") is { } cert
            ? cert.Length > 0 ? Path.GetFullPath(cert) : throw new CliUsageException($"--cert needs the path of a PKCS#12 (.pfx) file. {ServeUsage}")
            : null;
        if (certificate is not null && !File.Exists(certificate))
        {
            throw new InvalidOperationException($"The certificate '{certificate}' does not exist. Give --cert the path of a PKCS#12 (.pfx) file.");
        }

        var passwordVariable = options.GetValueOrDefault("cert-password-env");
        if (passwordVariable is not null && certificate is null)
        {
            // Otherwise the server would silently serve plain HTTP to someone who asked for HTTPS.
            throw new CliUsageException("--cert-password-env needs --cert FILE.pfx (without --cert the server serves plain HTTP).");
        }

        if (passwordVariable is not null && Environment.GetEnvironmentVariable(passwordVariable) is null)
        {
            throw new InvalidOperationException($"The environment variable '{passwordVariable}' named by --cert-password-env is not set. Export it with the certificate's password.");
        }

        var server = new TdeEngine.Server.KmsServerOptions
        {
            Port = port,
            Host = host,
            CertificatePath = certificate,
            CertificatePasswordVariable = passwordVariable,
        };
        using var services = CliServices.Open();
        var app = TdeEngine.Server.KmsServer.Build(server, services.Kms, services.Ram, services.Audit);
        try
        {
            app.StartAsync().GetAwaiter().GetResult();
        }
        catch (IOException e)
        {
            // Kestrel: "Failed to bind to address http://127.0.0.1:8080: address already in use."
            ((IDisposable)app).Dispose();
            throw new InvalidOperationException($"{e.Message} Choose another --port (0 picks a free one).", e);
        }

        stdout.WriteLine($"tde kms server listening on {string.Join(", ", app.Urls)} (Alibaba KMS RPC API 2016-01-20; Ctrl+C stops)");
        stdout.Flush();
        app.WaitForShutdownAsync().GetAwaiter().GetResult();
        return 0;
    }

    /// <summary>
    /// For <c>tde kms|ram &lt;Action&gt;</c>: with <c>--help</c>, prints the action's usage and returns true.
    /// Otherwise refuses an option the action does not take (as aliyun-cli does): a mistyped
    /// <c>--EncryptionContex</c> would be dropped without a word, and the call run without it. An
    /// unknown action is left to the API, which answers <c>InvalidAction.NotFound</c>.
    /// </summary>
    internal static bool HelpOrRefuseUnknownOptions(string group, string action, Dictionary<string, string> parameters,
        IReadOnlyList<(string Action, string Usage)> actions, TextWriter stdout)
    {
        var usage = actions.FirstOrDefault(a => a.Action == action).Usage;
        if (parameters.ContainsKey("help"))
        {
            stdout.WriteLine($"tde {group} {action} {usage ?? throw new CliUsageException($"unknown action '{action}'. Run 'tde {group} --help' for the list.")}");
            return true;
        }

        if (usage is null)
        {
            return false;
        }

        var declared = ActionUsage.ParameterNames(usage);
        foreach (var name in parameters.Keys.Order(StringComparer.Ordinal))
        {
            if (!declared.Contains(name))
            {
                var meant = ActionUsage.Closest(name, declared) is { } closest ? $" Did you mean --{closest}?" : "";
                throw new CliUsageException($"{action} does not take --{name}.{meant} Usage: tde {group} {action} {usage}");
            }
        }

        return false;
    }

    /// <summary>Writes a response body to stdout; 0 on success, 1 on an error response.</summary>
    internal static int WriteResponse(KmsApiResponse response, TextWriter stdout)
    {
        using (var output = Console.OpenStandardOutput())
        {
            stdout.Flush();
            output.Write(response.Body);
            output.Write("\n"u8);
        }

        return response.IsSuccess ? 0 : 1;
    }

    /// <summary>Reads <c>--Name value</c> and <c>--Name=value</c> pairs.</summary>
    internal static Dictionary<string, string> ParseParameters(ReadOnlySpan<string> args)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
            {
                throw new CliUsageException($"expected --<Param> <value>, got '{arg}'.");
            }

            var name = arg[2..];
            string value;
            var eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                value = name[(eq + 1)..];
                name = name[..eq];
            }
            else if (name == "help")
            {
                value = "";
            }
            else if (i + 1 < args.Length)
            {
                value = args[++i];
            }
            else
            {
                throw new CliUsageException($"--{name} needs a value.");
            }

            if (!result.TryAdd(name, value))
            {
                throw new CliUsageException($"--{name} is given more than once.");
            }
        }

        return result;
    }

    private static void PrintHelp(TextWriter stdout)
    {
        stdout.WriteLine("Usage: tde kms <Action> --<Param> <value> ...");
        stdout.WriteLine("Prints the JSON response of the Alibaba KMS OpenAPI (2016-01-20). On error it prints");
        stdout.WriteLine("{\"Code\",\"Message\",\"RequestId\"} and exits 1. State lives under $TDE_HOME (default ./.tde).");
        stdout.WriteLine();
        stdout.WriteLine("Actions:");
        foreach (var (action, usage) in KmsApi.Actions)
        {
            stdout.WriteLine($"  {action,-32} {usage}");
        }
    }
}
