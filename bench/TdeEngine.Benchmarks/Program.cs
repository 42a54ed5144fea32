using BenchmarkDotNet.Running;

namespace TdeEngine.Benchmarks;

/// <summary>
/// Micro-benchmarks. Run: <c>dotnet run -c Release --project bench/TdeEngine.Benchmarks -- --filter '*'</c>.
/// Every class has a baseline in the same run, so the Ratio column is the number to read.
/// </summary>
internal static class Program
{
    private static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, new BenchConfig());
}
