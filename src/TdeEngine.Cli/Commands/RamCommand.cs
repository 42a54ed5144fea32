using TdeEngine.Ram.Api;

namespace TdeEngine.Cli.Commands;

/// <summary><c>tde ram &lt;ApiName&gt; --&lt;Param&gt; value ...</c>: the RAM actions, through the gateway (authorized and audited).</summary>
internal static class RamCommand
{
    public static int Run(string[] args, TextWriter stdout)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            stdout.WriteLine("Usage: tde ram <Action> --<Param> <value> ...   (Alibaba RAM API style; errors print {\"Code\",\"Message\",\"RequestId\"} and exit 1)");
            stdout.WriteLine();
            stdout.WriteLine("Actions:");
            foreach (var (action, usage) in RamApi.Actions)
            {
                stdout.WriteLine($"  {action,-24} {usage}");
            }

            return args.Length == 0 ? 2 : 0;
        }

        var parameters = KmsCommand.ParseParameters(args.AsSpan(1));
        if (KmsCommand.HelpOrRefuseUnknownOptions("ram", args[0], parameters, RamApi.Actions, stdout))
        {
            return 0;
        }

        using var services = CliServices.Open();
        using var response = services.Gateway.InvokeRam(services.RootContext, args[0], parameters, indented: true);
        return KmsCommand.WriteResponse(response, stdout);
    }
}
