using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;

namespace TdeEngine.Benchmarks;

/// <summary>
/// One core (affinity mask 1), the baseline ratio, allocations, and throughput columns, so figures
/// read as "ops/s on one core" and as a multiple of the baseline measured in the same run.
/// </summary>
internal sealed class BenchConfig : ManualConfig
{
    public BenchConfig()
    {
        Add(DefaultConfig.Instance);
        AddJob(Job.Default.WithAffinity(1).WithWarmupCount(3).WithIterationCount(10));
        AddDiagnoser(MemoryDiagnoser.Default);
        AddColumn(StatisticColumn.OperationsPerSecond, BaselineRatioColumn.RatioMean);
        WithOptions(ConfigOptions.JoinSummary);
    }
}
