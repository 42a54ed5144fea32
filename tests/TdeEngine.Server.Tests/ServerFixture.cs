using TdeEngine.Kms.Api;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.Data.Sqlite;
using TdeEngine.Audit;
using TdeEngine.Kms;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Ram;

namespace TdeEngine.Server.Tests;

/// <summary>A real Kestrel server on 127.0.0.1 (free port) over a KMS in a temp home, and a signing client.</summary>
public sealed class ServerFixture : IAsyncDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-server-" + Guid.NewGuid().ToString("N"));
    private readonly FileRootKeyProvider _root;

    public ServerFixture(KmsServerOptions? options = null)
    {
        Directory.CreateDirectory(_home);
        _root = FileRootKeyProvider.OpenOrCreate(Path.Combine(_home, "root.key"));
        Kms = KeyManagementService.Open(new KmsOptions { Home = _home }, _root);
        Ram = RamService.Open(_home, _root);
        Audit = AuditTrail.Open(_home, _root);
        options ??= new KmsServerOptions();
        options.Port = 0;
        App = KmsServer.Build(options, Kms, Ram, Audit);
        App.StartAsync().GetAwaiter().GetResult();
        BaseAddress = new Uri(App.Urls.First());
        using var key = Ram.CreateAccessKey(KmsCallContext.ForRoot(Kms.Options.DefaultAccountId));
        AccessKeyId = key.AccessKeyId;
        Secret = key.Secret.Span.ToArray();
        Http = new HttpClient(new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, _, _, _) => true }) { BaseAddress = BaseAddress };
    }

    public KeyManagementService Kms { get; }

    public RamService Ram { get; }

    public AuditTrail Audit { get; }

    public WebApplication App { get; }

    public Uri BaseAddress { get; }

    public HttpClient Http { get; }

    public string AccessKeyId { get; }

    public byte[] Secret { get; }

    /// <summary>The common parameters, signed for POST, with the action's own parameters.</summary>
    public Dictionary<string, string> Signed(string action, IDictionary<string, string>? parameters = null, DateTimeOffset? timestamp = null, byte[]? secret = null)
    {
        var all = new Dictionary<string, string>(parameters ?? new Dictionary<string, string>(), StringComparer.Ordinal);
        RpcSignature.SignRequest(all, action, "2016-01-20", AccessKeyId, secret ?? Secret, timestamp: timestamp);
        return all;
    }

    public async Task<(int Status, string Body)> Post(IDictionary<string, string> form)
    {
        using var response = await Http.PostAsync("/", new FormUrlEncodedContent(form));
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
        Audit.Dispose();
        Ram.Dispose();
        Kms.Dispose();
        _root.Dispose();
        SqliteConnection.ClearAllPools();
        Directory.Delete(_home, recursive: true);
    }
}
