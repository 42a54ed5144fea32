namespace TdeEngine.Cli.Commands;

/// <summary>The command line was not understood; the message says how to fix it (exit code 2).</summary>
internal sealed class CliUsageException(string message) : Exception(message);
