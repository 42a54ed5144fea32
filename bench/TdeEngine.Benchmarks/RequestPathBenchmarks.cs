using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using BenchmarkDotNet.Attributes;
using TdeEngine.Audit;
using TdeEngine.Gateway;
using TdeEngine.Kms;
using TdeEngine.Kms.Api;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Ram;
using TdeEngine.Server;

namespace TdeEngine.Benchmarks;

/// <summary>
/// The per-request work of the KMS server outside HTTP, piece by piece: checking an RPC signature
/// (against a bare HMAC-SHA1 of the same string), and GenerateDataKey through the gateway (RAM and
/// event construction, audit sink dropping events) against the KMS action alone.
/// </summary>
public class RequestPathBenchmarks : IDisposable
{
    private readonly Dictionary<string, string> _signed = new(StringComparer.Ordinal);
    private readonly byte[] _secret = Encoding.ASCII.GetBytes("0123456789abcdefghijABCDEFGHIJ");
    private byte[] _stringToSign = [];
    private string _home = "";
    private FileRootKeyProvider _root = null!;
    private KeyManagementService _kms = null!;
    private RamService _ram = null!;
    private KmsGateway _gateway = null!;
    private KmsApi _api = null!;
    private KmsCallContext _caller = null!;
    private Dictionary<string, string> _parameters = null!;

    [GlobalSetup]
    public void Setup()
    {
        foreach (var (name, value) in new Dictionary<string, string>
        {
            ["Action"] = "GenerateDataKey", ["Format"] = "JSON", ["Version"] = "2016-01-20", ["AccessKeyId"] = "LTAI5tQ2xv7dEXAMPLE00000",
            ["SignatureMethod"] = "HMAC-SHA1", ["SignatureVersion"] = "1.0", ["SignatureNonce"] = Guid.NewGuid().ToString("N"),
            ["Timestamp"] = DateTime.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture),
            ["KeyId"] = Guid.NewGuid().ToString("D"), ["EncryptionContext"] = "{\"db\":\"orders\"}",
        })
        {
            _signed[name] = value;
        }

        _signed["Signature"] = RpcSignature.Compute("POST", _signed, _secret);
        _stringToSign = Encoding.UTF8.GetBytes("POST&%2F&" + string.Join("%26", _signed.Select(p => p.Key + "%3D" + p.Value)));

        _home = Path.Combine(Path.GetTempPath(), "tde-bench-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_home);
        _root = FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key"));
        _kms = KeyManagementService.Open(new KmsOptions { Home = _home }, _root);
        _ram = RamService.Open(_home, _root);
        _caller = KmsCallContext.ForRoot(_kms.Options.DefaultAccountId);
        var keyId = _kms.CreateKey(_caller, new CreateKeyRequest { Description = "bench" }).KeyId;
        _parameters = new Dictionary<string, string> { ["KeyId"] = keyId, ["EncryptionContext"] = "{\"db\":\"orders\"}" };
        _gateway = new KmsGateway(_kms, _ram, new DroppingSink());
        _api = new KmsApi(_kms);
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _ram?.Dispose();
        _kms?.Dispose();
        _root?.Dispose();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (Directory.Exists(_home))
        {
            Directory.Delete(_home, recursive: true);
        }

        GC.SuppressFinalize(this);
    }

    [Benchmark(Baseline = true, Description = "HMAC-SHA1 of a string to sign (floor)")]
    [BenchmarkCategory("signature")]
    public byte[] RawHmac() => HMACSHA1.HashData(_secret, _stringToSign);

    [Benchmark(Description = "RpcSignature.Compute, 11 parameters")]
    [BenchmarkCategory("signature")]
    public string Signature() => RpcSignature.Compute("POST", _signed, _secret);

    [Benchmark(Description = "ReplayGuard key: XXH3 (64-bit) of access key id and nonce")]
    [BenchmarkCategory("signature")]
    public ulong ReplayKey() => _guard.Key(_signed["AccessKeyId"], _signed["SignatureNonce"]);

    private readonly ReplayGuard _guard = new(TimeProvider.System);

    [Benchmark(Description = "KmsApi GenerateDataKey")]
    public int Api()
    {
        using var response = _api.Invoke(_caller, "GenerateDataKey", _parameters);
        return response.HttpStatus;
    }

    [Benchmark(Description = "KmsGateway GenerateDataKey (RAM + event, dropped)")]
    public int Gateway()
    {
        using var response = _gateway.InvokeKms(_caller, "GenerateDataKey", _parameters);
        return response.HttpStatus;
    }

    private sealed class DroppingSink : IAuditSink
    {
        public AuditEvent Append(AuditEvent auditEvent) => auditEvent;

        public Task<AuditEvent> AppendAsync(AuditEvent auditEvent) => Task.FromResult(auditEvent);
    }
}
