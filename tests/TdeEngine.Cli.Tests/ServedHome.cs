using System.Diagnostics;
using Microsoft.Data.Sqlite;

namespace TdeEngine.Cli.Tests;

/// <summary>
/// A temporary <c>$TDE_HOME</c> and, once started, <c>tde kms serve --port 0</c> on it as a child
/// process, run as a user runs it (the server's own socket settings; nothing inherited from the test).
/// </summary>
internal sealed class ServedHome : IDisposable
{
    private Process? _server;

    public ServedHome(string prefix)
    {
        Home = Path.Combine(Path.GetTempPath(), prefix + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Home);
    }

    public string Home { get; }

    /// <summary>Starts the server and returns its http://127.0.0.1:PORT address.</summary>
    public string StartServer(IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tde.dll"));
        foreach (var arg in new[] { "kms", "serve", "--port", "0" })
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["TDE_HOME"] = Home;
        start.Environment.Remove("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS");
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        _server = Process.Start(start)!;
        var line = _server.StandardOutput.ReadLine() ?? throw new InvalidOperationException("The server exited: " + _server.StandardError.ReadToEnd());
        var url = line.Split(' ').First(w => w.StartsWith("http://", StringComparison.Ordinal)).TrimEnd(',');
        if (!url.StartsWith("http://127.0.0.1:", StringComparison.Ordinal))
        {
            throw new InvalidOperationException("The server did not bind to 127.0.0.1: " + line);
        }

        return url;
    }

    /// <summary>Ends the server with SIGKILL (what <see cref="Process.Kill()"/> sends on Unix): no shutdown code runs.</summary>
    public void KillServer()
    {
        _server!.Kill();
        _server.WaitForExit();
        _server.Dispose();
        _server = null;
    }

    public void Dispose()
    {
        if (_server is { HasExited: false })
        {
            _server.Kill(entireProcessTree: true);
            _server.WaitForExit();
        }

        _server?.Dispose();
        SqliteConnection.ClearAllPools();
        Directory.Delete(Home, recursive: true);
    }
}
