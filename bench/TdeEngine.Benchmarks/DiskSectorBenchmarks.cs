using System.Security.Cryptography;
using BenchmarkDotNet.Attributes;
using TdeEngine.Disks.Xts;

namespace TdeEngine.Benchmarks;

/// <summary>
/// XTS-AES-256 as the disk runs it, against its floor: the AES-256-ECB pass over the same bytes
/// that XTS is built on (a reused transform, as the disk keeps one), measured in the same run. The
/// difference is the tweak computation (one AES block per sector plus a GF(2^128) doubling per
/// block) and the two XOR passes.
/// </summary>
[MemoryDiagnoser]
public class DiskSectorBenchmarks : IDisposable
{
    private readonly byte[] _sector = new byte[4096];
    private readonly byte[] _run = new byte[256 * 1024];
    private Aes _aes = null!;
    private ICryptoTransform _ecb = null!;
    private XtsAes256 _xts = null!;

    [GlobalSetup]
    public void Setup()
    {
        RandomNumberGenerator.Fill(_sector);
        RandomNumberGenerator.Fill(_run);
        var key = RandomNumberGenerator.GetBytes(XtsAes256.KeySize);
        _aes = Aes.Create();
        _aes.Mode = CipherMode.ECB;
        _aes.Padding = PaddingMode.None;
        _aes.SetKey(key.AsSpan(0, 32));
        _ecb = _aes.CreateEncryptor();
        _xts = new XtsAes256(key);
        CryptographicOperations.ZeroMemory(key);
    }

    [Benchmark(Baseline = true, Description = "raw AES-256-ECB, 4 KiB")]
    public int RawEcbSector() => _ecb.TransformBlock(_sector, 0, _sector.Length, _sector, 0);

    [Benchmark(Description = "XTS-AES-256 disk sector, 4 KiB")]
    public void XtsSector() => _xts.EncryptSectors(7, 4096, _sector);

    [Benchmark(Description = "raw AES-256-ECB, 256 KiB")]
    public int RawEcbRun() => _ecb.TransformBlock(_run, 0, _run.Length, _run, 0);

    [Benchmark(Description = "XTS-AES-256 run of 64 sectors, 256 KiB")]
    public void XtsRun() => _xts.EncryptSectors(7, 4096, _run);

    [GlobalCleanup]
    public void Dispose()
    {
        _xts?.Dispose();
        _ecb?.Dispose();
        _aes?.Dispose();
        GC.SuppressFinalize(this);
    }
}
