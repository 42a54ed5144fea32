using System.Security.Cryptography;
using BenchmarkDotNet.Attributes;
using TdeEngine.Kms;
using TdeEngine.Kms.Crypto;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;

namespace TdeEngine.Benchmarks;

/// <summary>
/// In-process GenerateDataKey and Decrypt on a software key, against the raw cost of sealing 32
/// bytes with AES-256-GCM (the floor any envelope call pays) measured in the same run.
/// </summary>
public class KmsCryptoBenchmarks : IDisposable
{
    private static readonly EncryptionContext Context = EncryptionContext.Parse("{\"db\":\"orders\"}");
    private readonly byte[] _rawKey = RandomNumberGenerator.GetBytes(32);
    private readonly byte[] _rawNonce = new byte[12];
    private readonly byte[] _rawPlain = new byte[32];
    private readonly byte[] _rawCipher = new byte[32];
    private readonly byte[] _rawTag = new byte[16];
    private string _home = "";
    private KeyManagementService _kms = null!;
    private KmsCallContext _caller = null!;
    private string _keyId = "";
    private byte[] _blob = [];

    [GlobalSetup]
    public void Setup()
    {
        _home = Path.Combine(Path.GetTempPath(), "tde-bench-" + Guid.NewGuid().ToString("N"));
        _kms = KeyManagementService.Open(new KmsOptions { Home = _home });
        _caller = KmsCallContext.ForRoot(_kms.Options.DefaultAccountId);
        _keyId = _kms.CreateKey(_caller, new CreateKeyRequest { Description = "bench" }).KeyId;
        using var dataKey = _kms.GenerateDataKey(_caller, _keyId, 32, Context);
        _blob = dataKey.CiphertextBlob!;
    }

    [GlobalCleanup]
    public void Cleanup() => Dispose();

    [Benchmark(Baseline = true, Description = "raw AES-256-GCM seal of 32 B")]
    public void RawAesGcm()
    {
        FastRandom.Fill(_rawNonce);
        Aes256GcmOneShot.Encrypt(_rawKey, _rawNonce, _rawPlain, [], _rawCipher, _rawTag);
    }

    [Benchmark(Description = "GenerateDataKey (AES_256, with context)")]
    public int GenerateDataKey()
    {
        using var dataKey = _kms.GenerateDataKey(_caller, _keyId, 32, Context);
        return dataKey.CiphertextBlob!.Length;
    }

    [Benchmark(Description = "Decrypt a data key (with context)")]
    public int Decrypt()
    {
        using var plain = _kms.Decrypt(_caller, _blob, Context);
        return plain.Plaintext.Length;
    }

    public void Dispose()
    {
        _kms?.Dispose();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (Directory.Exists(_home))
        {
            Directory.Delete(_home, recursive: true);
        }

        GC.SuppressFinalize(this);
    }
}
