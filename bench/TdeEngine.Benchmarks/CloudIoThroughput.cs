using System.Diagnostics;
using System.Globalization;
using TdeEngine.Disks;
using TdeEngine.Kms;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Objects;
using TdeEngine.Storage.Keys;

namespace TdeEngine.Benchmarks;

/// <summary>
/// What the ECS-style disk and the OSS-style objects cost against the same I/O on a plain file,
/// measured in the same run: <c>cloud-io [--mb N] [--runs N] [--random-reads N]</c>.
/// <list type="bullet">
/// <item>Disk: sequential write of N MB in 1 MiB calls then fsync; sequential read; 4 KiB reads at
/// random aligned offsets. Baseline: the same calls on a plain file of the same size
/// (<c>RandomAccess</c>, fsync).</item>
/// <item>Object: seal N MB from memory into a file and fsync (one GenerateDataKey on the embedded
/// KMS included); open and read it all; 4 KiB range reads at random offsets (open once). Baseline:
/// writing, reading and range-reading the plaintext as a plain file.</item>
/// </list>
/// Runs are interleaved (plain, then sealed, per run) and medians reported; the page cache is warm
/// for reads, as it is for a disk or bucket in use, so the ratios show the CPU cost of the sealing.
/// </summary>
internal static class CloudIoThroughput
{
    private const int WriteCall = 1 << 20;
    private const int ReadSize = 4096;

    public static int Run(string[] args)
    {
        var megabytes = SideBySide.Option(args, "--mb", 64);
        var runs = SideBySide.Option(args, "--runs", 5);
        var randomReads = SideBySide.Option(args, "--random-reads", 20000);
        var bytes = (long)megabytes << 20;
        var root = Path.Combine(Path.GetTempPath(), "tde-cloud-io-bench-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(root);
        using var kms = KeyManagementService.Open(new KmsOptions { Home = Path.Combine(root, "kms") });
        var keys = new KmsDataKeyProvider(kms);
        var data = new byte[bytes];
        Random.Shared.NextBytes(data);
        var offsets = new long[randomReads];
        var rng = new Random(42);
        for (var i = 0; i < offsets.Length; i++)
        {
            offsets[i] = rng.NextInt64(bytes / ReadSize) * ReadSize;
        }

        var samples = new Dictionary<string, (List<double> Plain, List<double> Sealed)>(StringComparer.Ordinal);
        void Add(string row, double plain, double @sealed)
        {
            if (!samples.TryGetValue(row, out var lists))
            {
                samples[row] = lists = ([], []);
            }

            lists.Plain.Add(plain);
            lists.Sealed.Add(@sealed);
        }

        try
        {
            for (var run = 0; run < runs; run++)
            {
                var plainPath = Path.Combine(root, "plain.img");
                var diskPath = Path.Combine(root, "disk.img");
                var objectPath = Path.Combine(root, "object.tdeo");
                File.Delete(plainPath);
                File.Delete(diskPath);
                File.Delete(objectPath);

                // Disk: sequential write + fsync.
                var plainWrite = Time(() =>
                {
                    using var handle = File.OpenHandle(plainPath, FileMode.CreateNew, FileAccess.ReadWrite);
                    for (long at = 0; at < bytes; at += WriteCall)
                    {
                        RandomAccess.Write(handle, data.AsSpan((int)at, WriteCall), at);
                    }

                    RandomAccess.FlushToDisk(handle);
                });
                var diskWrite = Time(() =>
                {
                    using var disk = EncryptedDisk.Create(diskPath, bytes, keys, "alias/acs/ecs", EncryptionContext.From([new("bench", "disk")]));
                    for (long at = 0; at < bytes; at += WriteCall)
                    {
                        disk.Write(at, data.AsSpan((int)at, WriteCall));
                    }

                    disk.Flush();
                });
                Add("disk: sequential write + fsync", plainWrite, diskWrite);

                var buffer = new byte[WriteCall];
                var plainRead = Time(() =>
                {
                    using var handle = File.OpenHandle(plainPath);
                    for (long at = 0; at < bytes; at += WriteCall)
                    {
                        RandomAccess.Read(handle, buffer, at);
                    }
                });
                using (var disk = EncryptedDisk.Open(diskPath, keys))
                {
                    var diskRead = Time(() =>
                    {
                        for (long at = 0; at < bytes; at += WriteCall)
                        {
                            disk.Read(at, buffer);
                        }
                    });
                    Add("disk: sequential read", plainRead, diskRead);

                    var small = new byte[ReadSize];
                    using var handle = File.OpenHandle(plainPath);
                    var plainRandom = Time(() =>
                    {
                        foreach (var at in offsets)
                        {
                            RandomAccess.Read(handle, small, at);
                        }
                    });
                    var diskRandom = Time(() =>
                    {
                        foreach (var at in offsets)
                        {
                            disk.Read(at, small);
                        }
                    });
                    Add($"disk: {randomReads} random 4 KiB reads", plainRandom, diskRandom);
                }

                // Object: write (seal) + fsync, full read, range reads.
                var plainPut = Time(() =>
                {
                    using var file = new FileStream(objectPath + ".plain", FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
                    new MemoryStream(data, writable: false).CopyTo(file);
                    file.Flush(flushToDisk: true);
                });
                var sealedPut = Time(() =>
                {
                    using var file = new FileStream(objectPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
                    SealedObject.Seal(new MemoryStream(data, writable: false), file, keys, "alias/acs/oss", EncryptionContext.From([new("bench", "object")]));
                    file.Flush(flushToDisk: true);
                });
                Add("object: put (seal) + fsync", plainPut, sealedPut);

                var plainGet = Time(() =>
                {
                    using var file = new FileStream(objectPath + ".plain", FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
                    while (file.Read(buffer) > 0)
                    {
                    }
                });
                var sealedGet = Time(() =>
                {
                    using var reader = SealedObject.Open(new FileStream(objectPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16), keys, EncryptionContext.From([new("bench", "object")]));
                    while (reader.Read(buffer) > 0)
                    {
                    }
                });
                Add("object: get (open + read all)", plainGet, sealedGet);

                var range = new byte[ReadSize];
                using (var plainFile = new FileStream(objectPath + ".plain", FileMode.Open, FileAccess.Read, FileShare.Read, 1))
                using (var reader = SealedObject.Open(new FileStream(objectPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1), keys, EncryptionContext.From([new("bench", "object")])))
                {
                    var plainRanges = Time(() =>
                    {
                        foreach (var at in offsets)
                        {
                            plainFile.Position = at;
                            plainFile.ReadExactly(range);
                        }
                    });
                    var sealedRanges = Time(() =>
                    {
                        foreach (var at in offsets)
                        {
                            reader.Position = at;
                            reader.ReadExactly(range);
                        }
                    });
                    Add($"object: {randomReads} random 4 KiB range reads", plainRanges, sealedRanges);
                }

                File.Delete(objectPath + ".plain");
            }

            Console.WriteLine($"cloud-io: {megabytes} MB, {runs} interleaved runs, medians; baseline = the same calls on a plain file in the same run");
            Console.WriteLine("| workload | plain file ms | sealed ms | sealed ÷ plain | sealed MB/s |");
            Console.WriteLine("|---|---:|---:|---:|---:|");
            foreach (var (row, (plain, sealedTimes)) in samples)
            {
                var (p, s) = (SideBySide.Median(plain), SideBySide.Median(sealedTimes));
                var throughput = row.Contains("random", StringComparison.Ordinal) ? randomReads * (double)ReadSize / 1048576 / (s / 1000) : megabytes / (s / 1000);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {row} | {p:F0} | {s:F0} | {s / p:F2} | {throughput:F0} |"));
            }

            return 0;
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static double Time(Action action)
    {
        var watch = Stopwatch.StartNew();
        action();
        return watch.Elapsed.TotalMilliseconds;
    }
}
