using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using TdeEngine.Kms.Api;
using TdeEngine.Kms.Identity;

using static TdeEngine.Server.Tests.ErrorBody;

namespace TdeEngine.Server.Tests;

public sealed class ServerTests : IAsyncLifetime
{
    private ServerFixture _server = null!;

    public Task InitializeAsync()
    {
        _server = new ServerFixture();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task A_signed_request_is_served_and_its_replay_refused()
    {
        var request = _server.Signed("CreateKey", new Dictionary<string, string> { ["Description"] = "over http" });

        var first = await _server.Post(request);
        var replay = await _server.Post(request);

        Assert.Equal(200, first.Status);
        Assert.Equal("over http", JsonDocument.Parse(first.Body).RootElement.GetProperty("KeyMetadata").GetProperty("Description").GetString());
        Assert.Equal((400, "SignatureNonceUsed"), (replay.Status, Code(replay.Body)));
    }

    [Fact]
    public async Task A_replay_after_a_restart_is_refused_as_a_replay_because_the_nonce_is_in_the_audit_trail()
    {
        var request = _server.Signed("CreateKey", new Dictionary<string, string> { ["Description"] = "once" });
        var first = await _server.Post(request);
        Assert.Equal(200, first.Status);
        Assert.Equal(request["SignatureNonce"], _server.Audit.ReadAll().Single(e => e.EventName == "CreateKey").AdditionalEventData["signatureNonce"]);

        await _server.App.StopAsync();
        await using var restarted = KmsServer.Build(new KmsServerOptions { Port = 0 }, _server.Kms, _server.Ram, _server.Audit);
        await restarted.StartAsync();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri(restarted.Urls.First()) };
            using var replay = await http.PostAsync("/", new FormUrlEncodedContent(request));
            var body = await replay.Content.ReadAsStringAsync();
            var fresh = _server.Signed("ListKeys");
            using var other = await http.PostAsync("/", new FormUrlEncodedContent(fresh));

            Assert.Equal((400, "SignatureNonceUsed"), ((int)replay.StatusCode, Code(body)));
            Assert.Equal(200, (int)other.StatusCode);
            Assert.Single(_server.Kms.ListKeys(KmsCallContext.ForRoot(_server.Kms.Options.DefaultAccountId), 1, 100).Items);
        }
        finally
        {
            await restarted.StopAsync();
        }
    }

    [Fact]
    public async Task A_second_server_on_the_same_trail_is_refused_while_the_first_runs()
    {
        // The fixture's server is running on this trail: a second one would not know its nonces.
        var refused = Assert.Throws<InvalidOperationException>(() => KmsServer.Build(new KmsServerOptions { Port = 0 }, _server.Kms, _server.Ram, _server.Audit));
        Assert.Contains("Another KMS server is already serving this home", refused.Message, StringComparison.Ordinal);

        // A request answered by the first is still refused as a replay by the first.
        var request = _server.Signed("ListKeys");
        Assert.Equal(200, (await _server.Post(request)).Status);
        var replay = await _server.Post(request);
        Assert.Equal((400, "SignatureNonceUsed"), (replay.Status, Code(replay.Body)));

        // Stopped, it lets the next one take over (A_replay_after_a_restart... shows that one refuses the replay).
        await _server.App.StopAsync();
        await using var next = KmsServer.Build(new KmsServerOptions { Port = 0 }, _server.Kms, _server.Ram, _server.Audit);
    }

    [Fact]
    public async Task A_deny_on_plain_http_by_acs_SecureTransport_refuses_requests_over_http()
    {
        var root = KmsCallContext.ForRoot(_server.Kms.Options.DefaultAccountId);
        _server.Ram.CreateUser(root, "app");
        _server.Ram.CreatePolicy(root, "HttpsOnly", """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},
              {"Effect":"Deny","Action":"kms:*","Resource":"*","Condition":{"Bool":{"acs:SecureTransport":"false"}}}]}
            """);
        _server.Ram.AttachPolicy(root, "User", "app", "Custom", "HttpsOnly");
        using var key = _server.Ram.CreateAccessKey(root, "app");
        var request = new Dictionary<string, string>();
        RpcSignature.SignRequest(request, "ListKeys", "2016-01-20", key.AccessKeyId, key.Secret.Span);

        var (status, body) = await _server.Post(request);

        Assert.Equal("http", _server.BaseAddress.Scheme);
        Assert.Equal((403, "Forbidden.RAM"), (status, Code(body)));
        Assert.Contains("HttpsOnly", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stale_timestamps_wrong_signatures_and_unknown_keys_are_refused_and_audited()
    {
        var stale = await _server.Post(_server.Signed("ListKeys", timestamp: DateTimeOffset.UtcNow.AddMinutes(-20)));
        var wrong = await _server.Post(_server.Signed("ListKeys", secret: Encoding.ASCII.GetBytes("wrong-secret")));
        var unknown = _server.Signed("ListKeys");
        unknown["AccessKeyId"] = "LTAIdoesnotexist";
        var missing = await _server.Post(unknown);

        Assert.Equal((400, "InvalidTimeStamp.Expired"), (stale.Status, Code(stale.Body)));
        Assert.Equal((400, "SignatureDoesNotMatch"), (wrong.Status, Code(wrong.Body)));
        Assert.Equal((404, "InvalidAccessKeyId.NotFound"), (missing.Status, Code(missing.Body)));
        var events = _server.Audit.ReadAll().ToList();
        Assert.Equal(["InvalidTimeStamp.Expired", "SignatureDoesNotMatch", "InvalidAccessKeyId.NotFound"], events.Select(e => e.ErrorCode));
        Assert.All(events, e => Assert.Equal("unknown", e.UserIdentity.Type));
        Assert.True(_server.Audit.Verify().Intact);
    }

    [Fact]
    public async Task Errors_have_the_Alibaba_shape_and_status()
    {
        var unknown = await _server.Post(_server.Signed("MakeCoffee"));
        var badBlob = await _server.Post(_server.Signed("Decrypt", new Dictionary<string, string> { ["CiphertextBlob"] = "%%%" }));
        var noKey = await _server.Post(_server.Signed("DescribeKey", new Dictionary<string, string> { ["KeyId"] = Guid.NewGuid().ToString() }));
        var noParams = await _server.Post(new Dictionary<string, string> { ["Action"] = "ListKeys" });

        Assert.Equal((404, "InvalidAction.NotFound"), (unknown.Status, Code(unknown.Body)));
        Assert.Equal((400, "InvalidCiphertext"), (badBlob.Status, Code(badBlob.Body)));
        Assert.Equal((404, "Forbidden.KeyNotFound"), (noKey.Status, Code(noKey.Body)));
        Assert.Equal((400, "MissingParameter"), (noParams.Status, Code(noParams.Body)));
        // The same shape whether the request (no parameters) or the action (no such key) failed.
        Assert.All(new[] { noParams.Body, noKey.Body, unknown.Body, badBlob.Body }, body =>
            Assert.Equal(["Code", "Message", "RequestId", "HostId"], JsonDocument.Parse(body).RootElement.EnumerateObject().Select(p => p.Name)));
        Assert.Equal("127.0.0.1", JsonDocument.Parse(noKey.Body).RootElement.GetProperty("HostId").GetString());
    }

    [Fact]
    public async Task An_encryption_context_sent_as_a_flattened_map_is_bound_as_the_JSON_object()
    {
        // As the typed SDKs of the RPC generation send a map: EncryptionContext.<key>=<value>.
        var keyId = JsonDocument.Parse((await _server.Post(_server.Signed("CreateKey"))).Body).RootElement.GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
        var generated = await _server.Post(_server.Signed("GenerateDataKey",
            new Dictionary<string, string> { ["KeyId"] = keyId, ["EncryptionContext.db"] = "orders", ["EncryptionContext.tenant"] = "a.b" }));
        Assert.Equal(200, generated.Status);
        var blob = JsonDocument.Parse(generated.Body).RootElement.GetProperty("CiphertextBlob").GetString()!;

        var asJson = await _server.Post(_server.Signed("Decrypt",
            new Dictionary<string, string> { ["CiphertextBlob"] = blob, ["EncryptionContext"] = "{\"tenant\":\"a.b\",\"db\":\"orders\"}" }));
        var without = await _server.Post(_server.Signed("Decrypt", new Dictionary<string, string> { ["CiphertextBlob"] = blob }));
        var both = await _server.Post(_server.Signed("Decrypt",
            new Dictionary<string, string> { ["CiphertextBlob"] = blob, ["EncryptionContext"] = "{}", ["EncryptionContext.db"] = "orders" }));

        Assert.Equal(200, asJson.Status);
        Assert.Equal((400, "InvalidCiphertext"), (without.Status, Code(without.Body)));
        Assert.Equal((400, "InvalidParameter"), (both.Status, Code(both.Body)));
        var generate = Assert.Single(_server.Audit.ReadAll(), e => e.EventName == "GenerateDataKey");
        Assert.Equal("{\"db\":\"orders\",\"tenant\":\"a.b\"}", generate.RequestParameters["EncryptionContext"]);
    }

    [Fact]
    public async Task A_huge_body_is_refused_without_a_server_error()
    {
        using var content = new ByteArrayContent(new byte[2 * 1024 * 1024]);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/x-www-form-urlencoded");
        try
        {
            using var response = await _server.Http.PostAsync("/", content);
            Assert.Equal(413, (int)response.StatusCode);
        }
        catch (HttpRequestException)
        {
            // Kestrel answers 413 as soon as it sees the Content-Length and closes the connection; a client
            // still uploading may see the close instead of the answer. Either way: no 5xx, no crash.
        }

        Assert.Equal("ok", await _server.Http.GetStringAsync("/healthz"));
    }

    [Fact]
    public async Task Ten_thousand_malformed_requests_never_produce_a_server_error()
    {
        var random = new Random(20261128);
        string[] names = ["Action", "Version", "AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp",
            "KeyId", "CiphertextBlob", "Plaintext", "EncryptionContext", "NumberOfBytes", "PageSize", "Tags", "AliasName", "PendingWindowInDays"];
        string[] actions = ["CreateKey", "Decrypt", "Encrypt", "GenerateDataKey", "ListKeys", "TagResource", "ReEncrypt", "CreateAlias", "X", ""];
        string RandomValue() => random.Next(8) switch
        {
            0 => "",
            1 => new string('A', random.Next(1, 5000)),
            2 => Convert.ToBase64String(RandomNumberGenerator.GetBytes(random.Next(0, 300))),
            3 => "{\"a\":" + random.Next() + "}",
            4 => "-" + random.Next(),
            5 => "%00%ff\u0001" + (char)random.Next(0xD800, 0xDFFF),
            6 => "[{\"TagKey\":" + random.Next() + "}]",
            _ => Guid.NewGuid().ToString(),
        };

        var statuses = new System.Collections.Concurrent.ConcurrentBag<int>();
        await Parallel.ForAsync(0, 10_000, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, _) =>
        {
            Dictionary<string, string> form;
            lock (random)
            {
                form = i % 3 == 0
                    ? _server.Signed(actions[random.Next(actions.Length)], names.Skip(8).Where(_ => random.Next(2) == 0).ToDictionary(n => n, _ => RandomValue()))
                    : names.Where(_ => random.Next(2) == 0).ToDictionary(n => n, _ => RandomValue());
                if (i % 3 == 0 && random.Next(4) == 0)
                {
                    form[names[random.Next(names.Length)]] = RandomValue();   // break a signed request
                }
            }

            HttpResponseMessage response;
            if (i % 7 == 3)
            {
                response = await SendBrokenV3(form, random, RandomValue);
            }
            else if (i % 10 == 9)
            {
                using var garbage = new ByteArrayContent(RandomNumberGenerator.GetBytes(i % 4096));
                garbage.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(i % 20 == 19 ? "application/x-www-form-urlencoded" : "application/octet-stream");
                response = await _server.Http.PostAsync("/?" + string.Join('&', form.Select(p => Uri.EscapeDataString(p.Key) + "=" + Uri.EscapeDataString(p.Value).Replace("%25", "%", StringComparison.Ordinal))), garbage);
            }
            else
            {
                response = await _server.Http.PostAsync("/", new FormUrlEncodedContent(form));
            }

            using (response)
            {
                statuses.Add((int)response.StatusCode);
            }
        });

        Assert.Equal(10_000, statuses.Count);
        Assert.DoesNotContain(statuses, s => s >= 500);
        Assert.Equal("ok", await _server.Http.GetStringAsync("/healthz"));
        Assert.True(_server.Audit.Verify().Intact);
    }

    // A V3-signed request (ACS3-HMAC-SHA256), then broken in one random way: a header dropped,
    // changed or unsigned, the Authorization header garbled, or a body that is not what was hashed.
    private async Task<HttpResponseMessage> SendBrokenV3(Dictionary<string, string> query, Random random, Func<string> randomValue)
    {
        Dictionary<string, string> headers;
        byte[] body;
        int breakage;
        lock (random)
        {
            body = random.Next(3) == 0 ? Encoding.UTF8.GetBytes(randomValue()) : [];
            headers = Acs3Signature.SignHeaders("POST", _server.BaseAddress.Authority, random.Next(2) == 0 ? "ListKeys" : randomValue(), "2016-01-20",
                query, body, body.Length > 0 ? "application/x-www-form-urlencoded" : null, _server.AccessKeyId, _server.Secret);
            breakage = random.Next(6);
            var names = headers.Keys.Where(n => n != "host").ToList();
            var name = names[random.Next(names.Count)];
            switch (breakage)
            {
                case 0:
                    headers.Remove(name);
                    break;
                case 1:
                    headers[name] = randomValue();
                    break;
                case 2:
                    headers["x-acs-" + random.Next(100)] = randomValue();
                    break;
                case 3:
                    headers["Authorization"] = "ACS3-HMAC-SHA256 " + string.Join(',', Enumerable.Range(0, random.Next(5)).Select(_ => randomValue()));
                    break;
                case 4:
                    body = RandomNumberGenerator.GetBytes(random.Next(1, 2048));
                    break;
                default:
                    headers["Authorization"] = headers["Authorization"][..random.Next(headers["Authorization"].Length)];
                    break;
            }
        }

        using var request = new HttpRequestMessage(HttpMethod.Post, "/?" + string.Join('&', query.Select(p => RpcSignature.Encode(p.Key) + "=" + RpcSignature.Encode(p.Value))));
        request.Content = new ByteArrayContent(body);
        foreach (var (name, value) in headers.Where(h => h.Key != "host"))
        {
            // Values that HTTP cannot carry (control characters) are left out: that is the client's failure, not the server's.
            if (value.All(c => c is >= ' ' and < (char)0x7f))
            {
                _ = name == "content-type" ? request.Content.Headers.TryAddWithoutValidation("Content-Type", value) : request.Headers.TryAddWithoutValidation(name, value);
            }
        }

        return await _server.Http.SendAsync(request);
    }

    [Fact]
    public async Task Health_and_readiness_answer()
    {
        Assert.Equal("ok", await _server.Http.GetStringAsync("/healthz"));
        Assert.Equal("ready", await _server.Http.GetStringAsync("/readyz"));
    }

    [Fact]
    public async Task TLS_is_served_with_a_given_certificate()
    {
        var pfx = Path.Combine(Path.GetTempPath(), "tde-tls-" + Guid.NewGuid().ToString("N") + ".pfx");
        using (var rsa = RSA.Create(2048))
        {
            var request = new CertificateRequest("CN=127.0.0.1", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
            await File.WriteAllBytesAsync(pfx, certificate.Export(X509ContentType.Pfx, "pw"));
        }

        Environment.SetEnvironmentVariable("TDE_TEST_TLS_PASSWORD", "pw");
        try
        {
            await using var tls = new ServerFixture(new KmsServerOptions { CertificatePath = pfx, CertificatePasswordVariable = "TDE_TEST_TLS_PASSWORD" });
            Assert.Equal("https", tls.BaseAddress.Scheme);
            var (status, body) = await tls.Post(tls.Signed("ListKeys"));
            Assert.Equal(200, status);
            Assert.Equal(0, JsonDocument.Parse(body).RootElement.GetProperty("TotalCount").GetInt32());

            // Over HTTPS, acs:SecureTransport is true: an allow that requires it holds.
            var root = KmsCallContext.ForRoot(tls.Kms.Options.DefaultAccountId);
            tls.Ram.CreateUser(root, "app");
            tls.Ram.CreatePolicy(root, "HttpsOnly", """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"Bool":{"acs:SecureTransport":"true"}}}]}""");
            tls.Ram.AttachPolicy(root, "User", "app", "Custom", "HttpsOnly");
            using var key = tls.Ram.CreateAccessKey(root, "app");
            var request = new Dictionary<string, string>();
            RpcSignature.SignRequest(request, "ListKeys", "2016-01-20", key.AccessKeyId, key.Secret.Span);
            Assert.Equal(200, (await tls.Post(request)).Status);
        }
        finally
        {
            File.Delete(pfx);
        }
    }

    [Fact]
    public async Task The_server_listens_only_where_told_whatever_configuration_files_lie_around()
    {
        // A stray appsettings.json beside the binaries (or in the working directory) asking Kestrel for
        // another endpoint: the KMS server reads no configuration files, so it is ignored.
        int strayPort;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            strayPort = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }

        var url = "http://127.0.0.1:" + strayPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var settings = JsonSerializer.Serialize(new { Kestrel = new { Endpoints = new { Stray = new { Url = url } } }, urls = url });
        var paths = new[] { Path.Combine(AppContext.BaseDirectory, "appsettings.json"), Path.Combine(Environment.CurrentDirectory, "appsettings.json") }.Distinct().ToArray();
        foreach (var path in paths)
        {
            File.WriteAllText(path, settings);
        }

        try
        {
            await using var server = new ServerFixture();
            Assert.Single(server.App.Urls);
            Assert.Equal(200, (await server.Post(server.Signed("ListKeys"))).Status);
            using var stray = new System.Net.Sockets.TcpClient();
            await Assert.ThrowsAsync<System.Net.Sockets.SocketException>(() => stray.ConnectAsync(System.Net.IPAddress.Loopback, strayPort));
        }
        finally
        {
            foreach (var path in paths)
            {
                File.Delete(path);
            }
        }
    }

    [Fact]
    public void Inline_socket_completions_are_asked_for_unless_the_environment_already_decides()
    {
        var name = KmsServer.InlineSocketCompletionsVariable;
        var original = Environment.GetEnvironmentVariable(name);
        try
        {
            Environment.SetEnvironmentVariable(name, "0");
            Assert.False(KmsServer.PreferInlineSocketCompletions());
            Assert.Equal("0", Environment.GetEnvironmentVariable(name));

            Environment.SetEnvironmentVariable(name, null);
            Assert.True(KmsServer.PreferInlineSocketCompletions());
            Assert.Equal("1", Environment.GetEnvironmentVariable(name));
        }
        finally
        {
            Environment.SetEnvironmentVariable(name, original);
        }
    }
}
