using BenchmarkDotNet.Running;

namespace TdeEngine.Benchmarks;

/// <summary>
/// Micro-benchmarks: <c>dotnet run -c Release --project bench/TdeEngine.Benchmarks -- --filter '*'</c>.
/// Side by side with plain SQLite: <c>... -- side-by-side [--rows N] [--runs N] [--synchronous OFF|NORMAL|FULL]</c>;
/// the same workloads on SQLCipher (its own process, bound to Debian's libsqlcipher): <c>... -- side-by-side-sqlcipher</c>;
/// an online DEK re-encryption against copying and verifying the same file: <c>... -- rekey [--mb N]</c>;
/// the ECS-style disk and OSS-style objects against the same I/O on a plain file: <c>... -- cloud-io [--mb N]</c>;
/// a KMS server's start-up read of recent nonces from its audit trail: <c>... -- replay-seed [--events N]</c>.
/// Every table has a baseline measured in the same run, so the ratio is the number to read.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == "side-by-side")
        {
            return SideBySide.Run(args[1..]);
        }

        if (args.Length > 0 && args[0] == "side-by-side-sqlcipher")
        {
            return SqlCipherSideBySide.Run(args[1..]);
        }

        if (args.Length > 0 && args[0] == "hsm")
        {
            return HsmThroughput.Run(args[1..]);
        }

        if (args.Length > 0 && args[0] == "rekey")
        {
            return RekeyThroughput.Run(args[1..]);
        }

        if (args.Length > 0 && args[0] == "cloud-io")
        {
            return CloudIoThroughput.Run(args[1..]);
        }

        if (args.Length > 0 && args[0] == "server-load")
        {
            return ServerLoad.Run(args[1..]);
        }

        if (args.Length > 0 && args[0] == "replay-seed")
        {
            return ReplaySeedTime.Run(args[1..]);
        }

        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, new BenchConfig());
        return 0;
    }
}
