using System.Diagnostics;

namespace TdeEngine.Disks.Tests.Infrastructure;

/// <summary>Runs a Python script with the `cryptography` package (OpenSSL underneath) as an independent reference.</summary>
internal static class Python
{
    private const string Interpreter = "/usr/bin/python3";
    private const string Install = "apt-get install -y python3 python3-cryptography";

    /// <summary>Runs <paramref name="script"/> with <paramref name="stdin"/> and returns its standard output.</summary>
    public static string Run(string script, string stdin, params string[] args)
    {
        Assert.True(File.Exists(Interpreter), $"{Interpreter} is missing: install it with '{Install}'.");
        var start = new ProcessStartInfo(Interpreter)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(script);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var stderrTask = process.StandardError.ReadToEndAsync();
        var stdoutTask = process.StandardOutput.ReadToEndAsync();
        process.StandardInput.Write(stdin);
        process.StandardInput.Close();
        process.WaitForExit();
        var stderr = stderrTask.GetAwaiter().GetResult();
        Assert.False(stderr.Contains("No module named 'cryptography'", StringComparison.Ordinal),
            $"Python's 'cryptography' package is missing: install it with '{Install}'.");
        Assert.True(process.ExitCode == 0, $"The Python reference failed ({process.ExitCode}): {stderr}");
        return stdoutTask.GetAwaiter().GetResult();
    }
}
