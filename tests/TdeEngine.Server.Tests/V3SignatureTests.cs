using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using TdeEngine.Kms.Api;
using static TdeEngine.Server.Tests.ErrorBody;

namespace TdeEngine.Server.Tests;

/// <summary>
/// Requests signed with the V3 signature (ACS3-HMAC-SHA256 in an Authorization header), as the
/// current Alibaba SDKs send them by default, against a real Kestrel server.
/// </summary>
public sealed class V3SignatureTests : IAsyncLifetime
{
    private ServerFixture _server = null!;

    public Task InitializeAsync()
    {
        _server = new ServerFixture();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private async Task<string> CreateKey()
    {
        var created = await _server.SendV3("CreateKey", new Dictionary<string, string> { ["Description"] = "v3 key" });
        Assert.Equal(200, created.Status);
        return JsonDocument.Parse(created.Body).RootElement.GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
    }

    [Fact]
    public async Task A_V3_request_with_parameters_in_the_query_is_served_and_its_replay_refused()
    {
        var keyId = await CreateKey();
        var nonce = "nonce-" + Guid.NewGuid();
        var query = new Dictionary<string, string> { ["KeyId"] = keyId, ["EncryptionContext"] = "{\"db\":\"orders v3\"}" };

        var generated = await _server.SendV3("GenerateDataKey", query, nonce: nonce);
        var replayed = await _server.SendV3("GenerateDataKey", query, nonce: nonce);

        Assert.Equal(200, generated.Status);
        var key = JsonDocument.Parse(generated.Body).RootElement;
        Assert.Equal(32, Convert.FromBase64String(key.GetProperty("Plaintext").GetString()!).Length);
        Assert.Equal(keyId, key.GetProperty("KeyId").GetString());
        // The replay was re-signed by the key's owner with the same nonce: refused as a replay, not as a bad signature.
        Assert.Equal((400, "SignatureNonceUsed"), (replayed.Status, Code(replayed.Body)));
        var events = _server.Audit.ReadAll().Where(e => e.EventName == "GenerateDataKey").ToList();
        Assert.Equal([null, "SignatureNonceUsed"], events.Select(e => e.ErrorCode));
        Assert.Equal("orders v3", JsonDocument.Parse(events[0].RequestParameters["EncryptionContext"]).RootElement.GetProperty("db").GetString());
        Assert.Equal(nonce, events[0].AdditionalEventData["signatureNonce"]);
    }

    [Fact]
    public async Task A_V3_request_with_a_form_body_is_served()
    {
        var keyId = await CreateKey();
        var plaintext = Convert.ToBase64String("sealed by v3"u8);

        var encrypted = await _server.SendV3("Encrypt", new Dictionary<string, string> { ["KeyId"] = keyId },
            formBody: "Plaintext=" + Uri.EscapeDataString(plaintext));
        Assert.Equal(200, encrypted.Status);
        var blob = JsonDocument.Parse(encrypted.Body).RootElement.GetProperty("CiphertextBlob").GetString()!;
        var decrypted = await _server.SendV3("Decrypt", formBody: "CiphertextBlob=" + Uri.EscapeDataString(blob));

        Assert.Equal(200, decrypted.Status);
        Assert.Equal(plaintext, JsonDocument.Parse(decrypted.Body).RootElement.GetProperty("Plaintext").GetString());
    }

    [Fact]
    public async Task A_chunked_form_body_larger_than_one_read_is_served()
    {
        // No Content-Length: the server reads the body in growing steps.
        var keyId = await CreateKey();
        var plaintext = Convert.ToBase64String(Enumerable.Range(0, 4096).Select(i => (byte)i).ToArray());
        var body = Encoding.ASCII.GetBytes("Plaintext=" + Uri.EscapeDataString(plaintext));
        var query = new Dictionary<string, string> { ["KeyId"] = keyId };
        var headers = Kms.Api.Acs3Signature.SignHeaders("POST", _server.BaseAddress.Authority, "Encrypt", "2016-01-20", query, body,
            "application/x-www-form-urlencoded", _server.AccessKeyId, _server.Secret);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/?KeyId=" + Uri.EscapeDataString(keyId))
        {
            Content = new StreamContent(new MemoryStream(body)),
        };
        request.Headers.TransferEncodingChunked = true;
        request.Content.Headers.TryAddWithoutValidation("Content-Type", headers["content-type"]);
        foreach (var (name, value) in headers.Where(h => h.Key is not ("host" or "content-type")))
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        using var response = await _server.Http.SendAsync(request);
        var answer = await response.Content.ReadAsStringAsync();

        Assert.True(body.Length > 4096);
        Assert.Equal(200, (int)response.StatusCode);
        var blob = JsonDocument.Parse(answer).RootElement.GetProperty("CiphertextBlob").GetString()!;
        var decrypted = await _server.SendV3("Decrypt", formBody: "CiphertextBlob=" + Uri.EscapeDataString(blob));
        Assert.Equal(plaintext, JsonDocument.Parse(decrypted.Body).RootElement.GetProperty("Plaintext").GetString());
    }

    [Fact]
    public async Task A_changed_body_query_action_or_signature_is_refused_as_SignatureDoesNotMatch_and_audited()
    {
        var keyId = await CreateKey();
        var query = new Dictionary<string, string> { ["KeyId"] = keyId };

        // The body changed after signing (its hash no longer matches x-acs-content-sha256).
        var body = await _server.SendV3("Encrypt", query, formBody: "Plaintext=aGVsbG8%3D", sentBody: "Plaintext=Z29vZGJ5ZQ%3D%3D");
        // The body and its hash changed after signing.
        var rehashed = await _server.SendV3("Encrypt", query, formBody: "Plaintext=aGVsbG8%3D", sentBody: "Plaintext=Z29vZGJ5ZQ%3D%3D",
            tamper: h => h["x-acs-content-sha256"] = Kms.Api.Acs3Signature.HashHex("Plaintext=Z29vZGJ5ZQ%3D%3D"u8));
        // The action changed after signing.
        var action = await _server.SendV3("DescribeKey", query, tamper: h => h["x-acs-action"] = "ScheduleKeyDeletion");
        // Another secret.
        var secret = await _server.SendV3("DescribeKey", query, secret: Encoding.ASCII.GetBytes("wrong-secret"));

        Assert.Equal((400, "SignatureDoesNotMatch"), (body.Status, Code(body.Body)));
        Assert.Contains("x-acs-content-sha256", Message(body.Body), StringComparison.Ordinal);
        Assert.Equal((400, "SignatureDoesNotMatch"), (rehashed.Status, Code(rehashed.Body)));
        Assert.Contains("ACS3-HMAC-SHA256", Message(rehashed.Body), StringComparison.Ordinal);
        Assert.Equal((400, "SignatureDoesNotMatch"), (action.Status, Code(action.Body)));
        Assert.Equal((400, "SignatureDoesNotMatch"), (secret.Status, Code(secret.Body)));
        Assert.Equal("Enabled", _server.Kms.DescribeKey(Kms.Identity.KmsCallContext.ForRoot(_server.Kms.Options.DefaultAccountId), keyId).KeyState);
        var refused = _server.Audit.ReadAll().Where(e => e.ErrorCode is not null).ToList();
        Assert.Equal(["Encrypt", "Encrypt", "ScheduleKeyDeletion", "DescribeKey"], refused.Select(e => e.EventName));
        Assert.All(refused, e => Assert.Equal("SignatureDoesNotMatch", e.ErrorCode));
        var trail = File.ReadAllText(_server.Audit.TrailPath);
        Assert.DoesNotContain("aGVsbG8", trail, StringComparison.Ordinal);
        Assert.DoesNotContain("Z29vZGJ5ZQ", trail, StringComparison.Ordinal);
        Assert.True(_server.Audit.Verify().Intact);
    }

    [Fact]
    public async Task A_query_parameter_changed_after_signing_is_refused()
    {
        var keyId = await CreateKey();

        var changed = await _server.SendV3("DescribeKey", new Dictionary<string, string> { ["KeyId"] = "alias/none" },
            sentQuery: new Dictionary<string, string> { ["KeyId"] = keyId });
        var added = await _server.SendV3("DescribeKey", new Dictionary<string, string> { ["KeyId"] = keyId },
            sentQuery: new Dictionary<string, string> { ["KeyId"] = keyId, ["PageSize"] = "1" });

        Assert.Equal((400, "SignatureDoesNotMatch"), (changed.Status, Code(changed.Body)));
        Assert.Equal((400, "SignatureDoesNotMatch"), (added.Status, Code(added.Body)));
    }

    [Fact]
    public async Task Missing_or_unsigned_headers_and_malformed_authorization_are_refused_with_stable_codes()
    {
        var noDate = await _server.SendV3("ListKeys", tamper: h => h.Remove("x-acs-date"));
        var unsignedAction = await _server.SendV3("ListKeys", tamper: h =>
            h["Authorization"] = h["Authorization"].Replace(";x-acs-action;", ";", StringComparison.Ordinal));
        var extraHeader = await _server.SendV3("ListKeys", tamper: h => h["x-acs-security-token"] = "unsigned");
        var sm3 = await _server.SendV3("ListKeys", tamper: h => h["Authorization"] = h["Authorization"].Replace("ACS3-HMAC-SHA256", "ACS3-HMAC-SM3", StringComparison.Ordinal));
        var garbled = await _server.SendV3("ListKeys", tamper: h => h["Authorization"] = "ACS3-HMAC-SHA256 Credential");
        var stale = await _server.SendV3("ListKeys", date: DateTimeOffset.UtcNow.AddMinutes(-20));
        var versionChanged = await _server.SendV3("ListKeys", tamper: h => h["x-acs-version"] = "2015-05-01");

        Assert.Equal((400, "MissingParameter"), (noDate.Status, Code(noDate.Body)));
        Assert.Contains("x-acs-date", Message(noDate.Body), StringComparison.Ordinal);
        Assert.Equal((400, "IncompleteSignature"), (unsignedAction.Status, Code(unsignedAction.Body)));
        Assert.Contains("'x-acs-action' is not in SignedHeaders", Message(unsignedAction.Body), StringComparison.Ordinal);
        Assert.Equal((400, "IncompleteSignature"), (extraHeader.Status, Code(extraHeader.Body)));
        Assert.Equal((400, "IncompleteSignature"), (sm3.Status, Code(sm3.Body)));
        Assert.Equal((400, "IncompleteSignature"), (garbled.Status, Code(garbled.Body)));
        Assert.Equal((400, "InvalidTimeStamp.Expired"), (stale.Status, Code(stale.Body)));
        Assert.Equal((400, "SignatureDoesNotMatch"), (versionChanged.Status, Code(versionChanged.Body)));
        var shape = JsonDocument.Parse(garbled.Body).RootElement.EnumerateObject().Select(p => p.Name).ToList();
        Assert.Equal(["Code", "Message", "RequestId", "HostId"], shape);
    }

    [Fact]
    public async Task A_body_that_is_not_a_form_is_refused()
    {
        var response = await _server.SendV3("ListKeys", formBody: "{\"PageSize\":1}", tamper: h => h["content-type"] = "application/json");

        // content-type was changed after signing, so the signature no longer matches... but the body is
        // refused first, before any key is looked up, for what it is.
        Assert.Equal((400, "InvalidParameter"), (response.Status, Code(response.Body)));
        Assert.Contains("form", Message(response.Body), StringComparison.Ordinal);
    }

    // A V3 request signed over the given query pairs and header values (a name may repeat in
    // either), sent over a raw connection with the query target and header lines given as sent.
    private (List<(string Name, string Value)> Headers, string Nonce) SignRaw(string action, IReadOnlyList<KeyValuePair<string, string>> query,
        Dictionary<string, string[]>? extra = null)
    {
        var nonce = "nonce-" + Guid.NewGuid();
        var headers = new Dictionary<string, string[]>(StringComparer.Ordinal)
        {
            ["host"] = [_server.BaseAddress.Authority],
            ["x-acs-action"] = [action],
            ["x-acs-version"] = ["2016-01-20"],
            ["x-acs-date"] = [DateTimeOffset.UtcNow.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture)],
            ["x-acs-signature-nonce"] = [nonce],
            ["x-acs-content-sha256"] = [Acs3Signature.HashHex([])],
        };
        foreach (var (name, values) in extra ?? [])
        {
            headers[name] = values;
        }

        var signed = headers.Keys.Order(StringComparer.Ordinal).ToList();
        var canonical = Acs3Signature.CanonicalRequest("POST", "/", query, signed, n => headers.TryGetValue(n, out var v) ? v : [], headers["x-acs-content-sha256"][0]);
        var lines = headers.SelectMany(h => h.Value.Select(v => (h.Key, v))).ToList();
        lines.Add(("Authorization", $"{Acs3Signature.Algorithm} Credential={_server.AccessKeyId},SignedHeaders={string.Join(';', signed)},Signature={Acs3Signature.Compute(canonical, _server.Secret)}"));
        return (lines, nonce);
    }

    private async Task<(int Status, string Body)> SendRaw(string target, IEnumerable<(string Name, string Value)> headers)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(_server.BaseAddress.Host, _server.BaseAddress.Port);
        var stream = tcp.GetStream();
        var head = new StringBuilder($"POST {target} HTTP/1.1\r\n");
        foreach (var (name, value) in headers)
        {
            head.Append(name).Append(": ").Append(value).Append("\r\n");
        }

        head.Append("Content-Length: 0\r\nConnection: close\r\n\r\n");
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head.ToString()));
        var response = await new StreamReader(stream).ReadToEndAsync();
        var body = response[(response.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
        return (int.Parse(response.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture), body);
    }

    [Fact]
    public async Task A_query_parameter_given_twice_is_refused_as_its_order_is_not_signed()
    {
        // The canonical query sorts a repeated name's values, so "b&a" verifies as "a&b"; the server
        // would act on the values in the order sent ("b,a"), which no signature covers.
        var (headers, _) = SignRaw("CreateKey", [new("Description", "a"), new("Description", "b")]);

        var reordered = await SendRaw("/?Description=b&Description=a", headers);

        Assert.True(reordered.Status == 400, reordered.Body);
        Assert.Equal("InvalidParameter", Code(reordered.Body));
        Assert.Contains("'Description'", Message(reordered.Body), StringComparison.Ordinal);
        Assert.Empty(_server.Kms.ListKeys(Kms.Identity.KmsCallContext.ForRoot(_server.Kms.Options.DefaultAccountId), 1, 10).Items);
    }

    [Fact]
    public async Task A_signed_header_given_twice_is_refused_so_a_reordered_nonce_is_no_fresh_request()
    {
        // Canonical header values are sorted, so the two nonce lines verify in either order; the
        // replay guard saw the nonce as sent ("n1,n2", then "n2,n1"), and served the replay.
        var (headers, _) = SignRaw("ListKeys", [], new() { ["x-acs-signature-nonce"] = ["n1-" + Guid.NewGuid(), "n2-" + Guid.NewGuid()] });
        var swapped = headers.Where(h => h.Name == "x-acs-signature-nonce").Reverse().Concat(headers.Where(h => h.Name != "x-acs-signature-nonce")).ToList();

        var first = await SendRaw("/", headers);
        var replay = await SendRaw("/", swapped);

        Assert.True(first.Status == 400, first.Body);
        Assert.True(replay.Status == 400, replay.Body);
        Assert.Equal("InvalidParameter", Code(first.Body));
        Assert.Contains("'x-acs-signature-nonce'", Message(first.Body), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_multipart_body_is_refused_rather_than_read_as_url_encoded()
    {
        // A multipart body was read with the url-encoded parser: the part's name was lost, and text
        // inside its value ("&Description=injected&") was read as parameters of their own.
        const string body = "--b\r\nContent-Disposition: form-data; name=\"Description\"\r\n\r\nnotes&Description=injected&x=\r\n--b--\r\n";

        var multipart = await _server.SendV3("CreateKey", formBody: body, contentType: "multipart/form-data; boundary=b");

        Assert.True(multipart.Status == 400, multipart.Body);
        Assert.Equal("InvalidParameter", Code(multipart.Body));
        Assert.Contains("application/x-www-form-urlencoded", Message(multipart.Body), StringComparison.Ordinal);
        Assert.Empty(_server.Kms.ListKeys(Kms.Identity.KmsCallContext.ForRoot(_server.Kms.Options.DefaultAccountId), 1, 10).Items);
    }
}
