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

    /// <summary>
    /// A V3 (ACS3-HMAC-SHA256) request to <c>/</c>: the parameters in the query, an optional form body,
    /// signed as the Tea SDKs sign; <paramref name="tamper"/> may change the headers after signing, and
    /// <paramref name="sentBody"/> / <paramref name="sentQuery"/> send other bytes than were signed.
    /// </summary>
    public async Task<(int Status, string Body)> SendV3(string action, IDictionary<string, string>? query = null, string? formBody = null,
        Action<Dictionary<string, string>>? tamper = null, byte[]? secret = null, DateTimeOffset? date = null, string method = "POST", string? sentBody = null,
        IDictionary<string, string>? sentQuery = null, string? nonce = null, string contentType = "application/x-www-form-urlencoded")
    {
        var parameters = query ?? new Dictionary<string, string>();
        var body = formBody is null ? [] : Encoding.UTF8.GetBytes(formBody);
        var headers = Acs3Signature.SignHeaders(method, BaseAddress.Authority, action, "2016-01-20", parameters, body,
            formBody is null ? null : contentType, AccessKeyId, secret ?? Secret, date: date, nonce: nonce);
        tamper?.Invoke(headers);
        var sentParameters = sentQuery ?? parameters;
        var uri = "/" + (sentParameters.Count == 0 ? "" : "?" + string.Join('&', sentParameters.Select(p => RpcSignature.Encode(p.Key) + "=" + RpcSignature.Encode(p.Value))));
        using var request = new HttpRequestMessage(new HttpMethod(method), uri);
        var sent = sentBody is null ? body : Encoding.UTF8.GetBytes(sentBody);
        if (formBody is not null || sentBody is not null)
        {
            request.Content = new ByteArrayContent(sent);
        }

        foreach (var (name, value) in headers)
        {
            if (name == "content-type")
            {
                request.Content!.Headers.TryAddWithoutValidation("Content-Type", value);
            }
            else if (name != "host")
            {
                request.Headers.TryAddWithoutValidation(name, value);
            }
            else if (value != BaseAddress.Authority)
            {
                request.Headers.Host = value;
            }
        }

        using var response = await Http.SendAsync(request);
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
