using System.Diagnostics;

namespace TdeEngine.Cli.Tests;

/// <summary>Runs the real <c>tde</c> CLI in a child process with its own <c>TDE_HOME</c>.</summary>
internal static class CliProcess
{
    private static readonly string TdeDll = Path.Combine(AppContext.BaseDirectory, "tde.dll");

    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(string home, params string[] args) => Run(home, null, args);

    /// <summary>Runs <c>tde</c> with extra environment variables (for example the HSM settings).</summary>
    public static Result Run(string home, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        Assert.True(File.Exists(TdeDll), $"The CLI was not built next to the tests: {TdeDll}");
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = home,
        };
        start.ArgumentList.Add(TdeDll);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["TDE_HOME"] = home;
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"tde {string.Join(' ', args)} did not finish within 60 s");
        }

        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }
}
