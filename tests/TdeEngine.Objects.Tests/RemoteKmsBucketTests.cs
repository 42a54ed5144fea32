using System.Text;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Server.Tests;
using TdeEngine.Sqlite;

namespace TdeEngine.Objects.Tests;

/// <summary>
/// A storage node whose bucket gets its data keys from a KMS server over the network (a real
/// Kestrel server on 127.0.0.1, signed RPC requests): the server authorizes and audits every
/// GenerateDataKey and Decrypt, and a forged secret is refused with the server's code.
/// </summary>
public sealed class RemoteKmsBucketTests : IAsyncLifetime
{
    private readonly TempFolder _root = new();
    private ServerFixture _server = null!;

    public Task InitializeAsync()
    {
        _server = new ServerFixture();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _root.Dispose();
    }

    [Fact]
    public void A_bucket_whose_keys_come_from_a_KMS_server_puts_and_gets_through_signed_audited_requests()
    {
        var root = KmsCallContext.ForRoot(_server.Kms.Options.DefaultAccountId);
        var key = _server.Kms.CreateKey(root, new() { Description = "remote bucket" }).KeyId;
        var directory = _root.File("bucket");
        using (var remote = new RemoteKmsDataKeyProvider(_server.BaseAddress, _server.AccessKeyId, _server.Secret))
        {
            var bucket = LocalBucket.Create(directory, "remote-bucket", remote, _server.Kms.Options.RegionId, _server.Kms.Options.DefaultAccountId);
            var put = bucket.PutObject("report.txt", new MemoryStream("sealed with a key from the server"u8.ToArray()), "KMS", key);
            using var reader = new StreamReader(bucket.GetObject("report.txt"));

            Assert.Equal("sealed with a key from the server", reader.ReadToEnd());
            Assert.EndsWith($":key/{key}", put.KmsKeyId, StringComparison.Ordinal);
        }

        // The server saw, authorized and recorded each call, under the access key that signed it.
        var events = _server.Audit.ReadAll().Where(e => e.UserIdentity.AccessKeyId == _server.AccessKeyId).Select(e => (e.EventName, e.ErrorCode)).ToList();
        Assert.Contains(("GenerateDataKey", (string?)null), events);
        Assert.Contains(("Decrypt", (string?)null), events);

        // A wrong secret: the server's signature check refuses it, and the bucket reports the server's code.
        using var forged = new RemoteKmsDataKeyProvider(_server.BaseAddress, _server.AccessKeyId, "not-the-secret"u8);
        var refused = Assert.Throws<KmsException>(() => LocalBucket.Open(directory, forged).GetObject("report.txt"));
        Assert.Equal("SignatureDoesNotMatch", refused.Code);
        Assert.DoesNotContain("sealed with a key", Encoding.UTF8.GetString(File.ReadAllBytes(LocalBucket.Open(directory, forged).PathOf("report.txt"))), StringComparison.Ordinal);
    }
}
