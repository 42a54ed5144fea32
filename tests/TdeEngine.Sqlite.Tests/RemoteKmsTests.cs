using System.Buffers;
using System.Text;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Identity;
using TdeEngine.Server.Tests;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// Databases whose DEKs come from a real KMS server (Kestrel on 127.0.0.1) through signed RPC
/// requests: the server authorizes and audits them; a wrong secret and a stopped server get clear errors.
/// </summary>
public sealed class RemoteKmsTests : IAsyncLifetime
{
    private readonly DatabaseFolder _dir = new();
    private ServerFixture _server = null!;

    public Task InitializeAsync()
    {
        _server = new ServerFixture();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        TdeTestEnvironment.EnsureRegistered();
        await _server.DisposeAsync();
        _dir.Dispose();
    }

    private static Storage.TdeStorageOptions NoCache => new() { TimeProvider = TdeTestEnvironment.Clock, DekCacheTtl = TimeSpan.Zero };

    private TdeStorageException OpenFails(string name)
    {
        using var db = new SqliteConnection(TdeSqlite.ConnectionString(_dir.File(name)));
        return Assert.Throws<TdeStorageException>(() => TdeSqlite.Explain(() =>
        {
            db.Open();
            return db.Scalar<long>("SELECT count(*) FROM sqlite_schema");
        }));
    }

    [Fact]
    public void A_data_key_read_from_the_KMS_server_is_not_left_in_the_shared_array_pool()
    {
        var key = _server.Kms.CreateKey(KmsCallContext.ForRoot(_server.Kms.Options.DefaultAccountId), new() { Description = "pool" }).KeyId;
        using var remote = new RemoteKmsDataKeyProvider(_server.BaseAddress, _server.AccessKeyId, _server.Secret);
        using var generated = remote.GenerateDataKey(key, EncryptionContext.Empty);

        using var dek = remote.Decrypt(generated.Wrapped, EncryptionContext.Empty);

        // The answer's Base64 must not reach arrays that any other code of the process rents next
        // (on this thread: the provider reads synchronously).
        var base64 = Encoding.ASCII.GetBytes(Convert.ToBase64String(dek.Span));
        for (var size = 16; size <= 1 << 20; size *= 2)
        {
            var rented = ArrayPool<byte>.Shared.Rent(size);
            try
            {
                Assert.True(rented.AsSpan().IndexOf(base64) < 0, $"The Base64 data key was found in a pooled array of {rented.Length} bytes.");
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented, clearArray: true);
            }
        }
    }

    [Theory]
    [InlineData("<html><body>Welcome to nginx!</body></html>")]
    [InlineData("{\"KeyId\":")]
    public void A_server_that_answers_200_with_something_other_than_a_KMS_answer_is_a_KMS_error(string body)
    {
        using var remote = new RemoteKmsDataKeyProvider(new Uri("http://127.0.0.1:9/"), "LTAIexample", "secret"u8, handler: new FixedAnswer(body));

        var decrypt = Assert.Throws<Kms.Errors.KmsException>(() => remote.Decrypt([1, 2, 3], EncryptionContext.Empty));
        var generate = Assert.Throws<Kms.Errors.KmsException>(() => remote.GenerateDataKey("alias/x", EncryptionContext.Empty));

        Assert.Equal(Kms.Errors.KmsErrors.Codes.InternalFailure, decrypt.Code);
        Assert.Equal(Kms.Errors.KmsErrors.Codes.InternalFailure, generate.Code);
    }

    [Theory]
    [InlineData("{\"Plaintext\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\",\"KeyId\":\"\\ud800\",\"CiphertextBlob\":\"AAAA\"}")]
    [InlineData("{\"Plaintext\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\",\"KeyId\":\"k\",\"CiphertextBlob\":\"not base64!\"}")]
    public void A_200_answer_whose_fields_cannot_be_read_is_a_KMS_error(string body)
    {
        using var remote = new RemoteKmsDataKeyProvider(new Uri("http://127.0.0.1:9/"), "LTAIexample", "secret"u8, handler: new FixedAnswer(body));

        var generate = Assert.Throws<Kms.Errors.KmsException>(() => remote.GenerateDataKey("alias/x", EncryptionContext.Empty));

        Assert.Equal(Kms.Errors.KmsErrors.Codes.InternalFailure, generate.Code);
    }

    [Fact]
    public void A_server_that_stalls_in_the_middle_of_its_answer_is_unreachable_after_the_timeout()
    {
        using var body = new Trickle(endless: false);
        using var remote = new RemoteKmsDataKeyProvider(new Uri("http://127.0.0.1:9/"), "LTAIexample", "secret"u8, handler: new StreamAnswer(body))
        {
            Timeout = TimeSpan.FromSeconds(1),
        };
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var e = Assert.Throws<HttpRequestException>(() => remote.Decrypt([1, 2, 3], EncryptionContext.Empty));

        Assert.Contains("did not answer Decrypt within 1 s", e.Message, StringComparison.Ordinal);
        Assert.True(body.Stalled, "the body read never reached the stall");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the call took {clock.Elapsed}");
    }

    [Fact]
    public async Task A_server_that_closes_the_connection_in_the_middle_of_its_answer_is_unreachable()
    {
        // A real socket: the answer promises 1000 bytes, sends 20 and closes.
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        var server = Task.Run(async () =>
        {
            using var client = await listener.AcceptTcpClientAsync();
            var stream = client.GetStream();
            var request = new byte[65536];
            var read = 0;
            while (!Encoding.ASCII.GetString(request, 0, read).Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                read += await stream.ReadAsync(request.AsMemory(read));
            }

            await stream.WriteAsync(Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"Plaintext\":\"AAAA"));
            await stream.FlushAsync();
            await Task.Delay(200);
            client.Client.Shutdown(System.Net.Sockets.SocketShutdown.Both);
        });
        using var remote = new RemoteKmsDataKeyProvider(new Uri($"http://127.0.0.1:{port}/"), "LTAIexample", "secret"u8);

        // As a server that cannot be reached: what the VFS and callers treat as Tde.KmsUnreachable.
        Assert.Throws<HttpRequestException>(() => remote.Decrypt([1, 2, 3], EncryptionContext.Empty));
        await server.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void A_server_whose_answer_never_ends_is_a_KMS_error_not_a_memory_exhaustion()
    {
        using var body = new Trickle(endless: true);
        using var remote = new RemoteKmsDataKeyProvider(new Uri("http://127.0.0.1:9/"), "LTAIexample", "secret"u8, handler: new StreamAnswer(body));

        var e = Assert.Throws<Kms.Errors.KmsException>(() => remote.Decrypt([1, 2, 3], EncryptionContext.Empty));

        Assert.Equal(Kms.Errors.KmsErrors.Codes.InternalFailure, e.Code);
        Assert.Contains("larger than 1 MiB", e.Message, StringComparison.Ordinal);
    }

    // A body that sends a little and then blocks until disposed, or that never ends.
    private sealed class Trickle(bool endless) : Stream
    {
        private readonly ManualResetEventSlim _disposed = new();
        private bool _sent;

        public bool Stalled { get; private set; }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (endless || !_sent)
            {
                _sent = true;
                buffer.AsSpan(offset, count).Fill((byte)' ');
                return count;
            }

            Stalled = true;
            _disposed.Wait();
            throw new ObjectDisposedException(nameof(Trickle));
        }

        protected override void Dispose(bool disposing)
        {
            _disposed.Set();
            base.Dispose(disposing);
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    private sealed class StreamAnswer(Stream body) : HttpMessageHandler
    {
        protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken) =>
            new(System.Net.HttpStatusCode.OK) { Content = new StreamContent(body) };

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromResult(Send(request, cancellationToken));
    }

    private sealed class FixedAnswer(string body) : HttpMessageHandler
    {
        protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken) =>
            new(System.Net.HttpStatusCode.OK) { Content = new StringContent(body, Encoding.UTF8, "text/html") };

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromResult(Send(request, cancellationToken));
    }

    [Fact]
    public void A_database_is_rewrapped_through_the_KMS_server()
    {
        var root = KmsCallContext.ForRoot(_server.Kms.Options.DefaultAccountId);
        var key = _server.Kms.CreateKey(root, new() { Description = "remote rotated" }).KeyId;
        using var remote = new RemoteKmsDataKeyProvider(_server.BaseAddress, _server.AccessKeyId, _server.Secret);
        TdeSqlite.Register(remote, NoCache);
        using (var db = _dir.OpenTde("rw.db", $"kms_key={key}"))
        {
            db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES ('rewrapped');");
        }

        var version = _server.Kms.CreateKeyVersion(root, key).KeyVersionId;
        var status = TdeDatabases.Rewrap(_dir.File("rw.db"));

        Assert.EndsWith($":key/{key}", status.KmsKeyArn, StringComparison.Ordinal);
        var envelope = Storage.Envelope.DatabaseEnvelope.Read(File.ReadAllBytes(_dir.File("rw.db")).AsSpan(0, 4096), "rw.db");
        Assert.All(envelope.Deks, d => Assert.Equal(version, Kms.Envelope.CiphertextBlob.ReadHeader(d.WrappedDek).KeyVersionId));
        using var again = _dir.OpenTde("rw.db");
        Assert.Equal("rewrapped", again.Scalar<string>("SELECT x FROM t"));
    }

    [Fact]
    public void A_database_is_re_encrypted_under_a_new_DEK_through_the_KMS_server()
    {
        var root = KmsCallContext.ForRoot(_server.Kms.Options.DefaultAccountId);
        var key = _server.Kms.CreateKey(root, new() { Description = "remote rekey" }).KeyId;
        using var remote = new RemoteKmsDataKeyProvider(_server.BaseAddress, _server.AccessKeyId, _server.Secret);
        TdeSqlite.Register(remote, NoCache);
        using (var db = _dir.OpenTde("rk.db", $"kms_key={key}&cipher=aegis-256"))
        {
            db.Exec("CREATE TABLE t(x); INSERT INTO t SELECT randomblob(500) FROM (WITH x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x WHERE n < 2000) SELECT n FROM x); INSERT INTO t VALUES ('re-encrypted');");
        }

        var status = TdeDatabases.Rekey(_dir.File("rk.db"), batchPages: 16);

        Assert.Equal(Storage.Pages.PageCipherSuite.Aegis256, status.Cipher);
        Assert.Equal([2u], status.Deks.Select(d => d.Version));
        Assert.Equal([2u], status.PagesPerDekVersion.Keys);
        Assert.EndsWith($":key/{key}", status.KmsKeyArn, StringComparison.Ordinal);
        using var again = _dir.OpenTde("rk.db");
        Assert.Equal("re-encrypted", again.Scalar<string>("SELECT x FROM t WHERE typeof(x) = 'text'"));
        Assert.Equal("ok", again.Scalar<string>("PRAGMA integrity_check"));
    }

    [Fact]
    public async Task A_database_keyed_by_a_KMS_server_opens_through_signed_audited_requests_and_fails_clearly_without_it()
    {
        var key = _server.Kms.CreateKey(KmsCallContext.ForRoot(_server.Kms.Options.DefaultAccountId), new() { Description = "remote" }).KeyId;
        using (var remote = new RemoteKmsDataKeyProvider(_server.BaseAddress, _server.AccessKeyId, _server.Secret))
        {
            TdeSqlite.Register(remote, NoCache);
            using (var db = _dir.OpenTde("remote.db", $"kms_key={key}"))
            {
                db.Exec("CREATE TABLE t(x); INSERT INTO t VALUES ('over the wire');");
            }

            using (var again = _dir.OpenTde("remote.db"))
            {
                Assert.Equal("over the wire", again.Scalar<string>("SELECT x FROM t"));
            }

            Assert.EndsWith($":key/{key}", TdeDatabases.Status(_dir.File("remote.db")).KmsKeyArn, StringComparison.Ordinal);
        }

        // The server saw, authorized and recorded each call, under the access key that signed it.
        var events = _server.Audit.ReadAll().Where(e => e.UserIdentity.AccessKeyId == _server.AccessKeyId).Select(e => (e.EventName, e.ErrorCode)).ToList();
        Assert.Contains(("GenerateDataKey", (string?)null), events);
        Assert.Contains(("Decrypt", (string?)null), events);

        // A wrong secret: refused by the server's signature check, reported as a KMS refusal.
        using (var forged = new RemoteKmsDataKeyProvider(_server.BaseAddress, _server.AccessKeyId, "not-the-secret"u8))
        {
            TdeSqlite.Register(forged, NoCache);
            var refused = OpenFails("remote.db");
            Assert.Equal(TdeStorageException.Codes.KeyUnavailable, refused.Code);
            Assert.Contains("SignatureDoesNotMatch", refused.Message, StringComparison.Ordinal);
        }

        // The server stops: new opens say the KMS is unreachable, not that the file is damaged.
        using var orphan = new RemoteKmsDataKeyProvider(_server.BaseAddress, _server.AccessKeyId, _server.Secret);
        TdeSqlite.Register(orphan, NoCache);
        await _server.App.StopAsync();
        var unreachable = OpenFails("remote.db");
        Assert.Equal(TdeStorageException.Codes.KmsUnreachable, unreachable.Code);
    }
}
