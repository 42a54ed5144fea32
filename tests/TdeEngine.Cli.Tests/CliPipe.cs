using System.Diagnostics;

namespace TdeEngine.Cli.Tests;

/// <summary>
/// Runs the real <c>tde</c> CLI with bytes on stdin and stdout captured as bytes, for the commands
/// whose input or output is binary (<c>tde disk write/read</c>, <c>tde oss put/get</c>).
/// </summary>
internal static class CliPipe
{
    public sealed record Result(int ExitCode, byte[] Stdout, string Stderr);

    public static Result Run(string home, byte[]? stdin, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = home,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tde.dll"));
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["TDE_HOME"] = home;
        using var process = Process.Start(start)!;
        using var stdout = new MemoryStream();
        var copy = process.StandardOutput.BaseStream.CopyToAsync(stdout);
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            process.StandardInput.BaseStream.Write(stdin);
        }

        process.StandardInput.Close();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"tde {string.Join(' ', args)} did not finish within 60 s");
        }

        copy.GetAwaiter().GetResult();
        return new Result(process.ExitCode, stdout.ToArray(), stderr.Result);
    }
}
