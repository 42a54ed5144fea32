using System.Text;
using TdeEngine.Kms.Api;

namespace TdeEngine.Kms.Tests.Api;

public class Acs3SignatureTests
{
    private static readonly byte[] Secret = Encoding.ASCII.GetBytes("kat-secret");

    private static readonly Dictionary<string, string> Headers = new(StringComparer.Ordinal)
    {
        ["host"] = "127.0.0.1:8080",
        ["x-acs-version"] = "2016-01-20",
        ["x-acs-action"] = "GenerateDataKey",
        ["user-agent"] = "kat",
        ["x-acs-date"] = "2026-11-29T08:00:00Z",
        ["x-acs-signature-nonce"] = "0123456789abcdef0123456789abcdef",
        ["accept"] = "application/json",
        ["content-type"] = "application/x-www-form-urlencoded",
        ["x-acs-content-sha256"] = "41e6ee914b2aa5b6ac91c92671ff669d3e11b2d2d5789d4689a19a9331fb7e67",
    };

    private static readonly KeyValuePair<string, string>[] Query =
    [
        new("KeyId", "alias/a b*~"), new("EncryptionContext", "{\"db\":\"orders\"}"), new("NumberOfBytes", "32"),
    ];

    private static readonly string[] Signed = ["content-type", "host", "x-acs-action", "x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce", "x-acs-version"];

    private static string Canonical(IEnumerable<KeyValuePair<string, string>> query, IReadOnlyList<string> signed) =>
        Acs3Signature.CanonicalRequest("POST", "/", query, signed, name => Headers.TryGetValue(name, out var v) ? [v] : [], Headers["x-acs-content-sha256"]);

    // The expected values were computed with Alibaba's own signer, @alicloud/openapi-util 0.3.3
    // (OpenApiUtil.hash and getAuthorization, as @alicloud/openapi-client 0.4.15 calls them), on the
    // same request: a form body "Plaintext=aGVsbG8%3D" and the query above.
    [Fact]
    public void The_signature_and_body_hash_match_Alibabas_signer()
    {
        Assert.Equal(Headers["x-acs-content-sha256"], Acs3Signature.HashHex("Plaintext=aGVsbG8%3D"u8));
        Assert.Equal("8bc95dc18c85203cce9c7f2a551736531fd5988154e4984d5f9f36afdadff215", Acs3Signature.Compute(Canonical(Query, Signed), Secret));
    }

    [Fact]
    public void The_canonical_request_sorts_and_encodes_the_query_and_the_signed_headers()
    {
        var canonical = Canonical(Query.Reverse(), Signed.Reverse().ToList());

        Assert.Equal(
            "POST\n/\n" +
            "EncryptionContext=%7B%22db%22%3A%22orders%22%7D&KeyId=alias%2Fa%20b%2A~&NumberOfBytes=32\n" +
            "content-type:application/x-www-form-urlencoded\nhost:127.0.0.1:8080\nx-acs-action:GenerateDataKey\n" +
            "x-acs-content-sha256:41e6ee914b2aa5b6ac91c92671ff669d3e11b2d2d5789d4689a19a9331fb7e67\nx-acs-date:2026-11-29T08:00:00Z\n" +
            "x-acs-signature-nonce:0123456789abcdef0123456789abcdef\nx-acs-version:2016-01-20\n\n" +
            "content-type;host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version\n" +
            "41e6ee914b2aa5b6ac91c92671ff669d3e11b2d2d5789d4689a19a9331fb7e67",
            canonical);
    }

    [Fact]
    public void Verify_accepts_the_signature_in_either_case_and_refuses_any_change()
    {
        var canonical = Canonical(Query, Signed);
        const string signature = "8bc95dc18c85203cce9c7f2a551736531fd5988154e4984d5f9f36afdadff215";

        Assert.True(Acs3Signature.Verify(canonical, Secret, signature));
        Assert.True(Acs3Signature.Verify(canonical, Secret, signature.ToUpperInvariant()));
        Assert.False(Acs3Signature.Verify(canonical, "kat-secreT"u8, signature));
        Assert.False(Acs3Signature.Verify(Canonical([.. Query[..2], new("NumberOfBytes", "16")], Signed), Secret, signature));
        Assert.False(Acs3Signature.Verify(Canonical(Query, Signed[1..]), Secret, signature));
        Assert.False(Acs3Signature.Verify(canonical, Secret, signature[..62]));
        Assert.False(Acs3Signature.Verify(canonical, Secret, "zz" + signature[2..]));
    }

    [Fact]
    public void A_request_signed_by_SignHeaders_verifies_against_its_own_canonical_request()
    {
        var body = "Plaintext=aGVsbG8%3D"u8.ToArray();
        var headers = Acs3Signature.SignHeaders("POST", "localhost:1", "Encrypt", "2016-01-20", Query, body, "application/x-www-form-urlencoded",
            "LTAIkat", Secret, securityToken: "token");
        var authorization = Acs3Signature.ParseAuthorization(headers["Authorization"], out var problem)!;

        Assert.Null(problem);
        Assert.Equal("LTAIkat", authorization.AccessKeyId);
        Assert.Contains("x-acs-security-token", authorization.SignedHeaders);
        var canonical = Acs3Signature.CanonicalRequest("POST", "/", Query, authorization.SignedHeaders,
            name => headers.TryGetValue(name, out var v) ? [v] : [], Acs3Signature.HashHex(body));
        Assert.True(Acs3Signature.Verify(canonical, Secret, authorization.Signature));
    }

    [Theory]
    [InlineData("ACS3-HMAC-SM3 Credential=a,SignedHeaders=host,Signature=00", "must start with")]
    [InlineData("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host", "lacks Signature")]
    [InlineData("ACS3-HMAC-SHA256 Credential=a,Credential=b,SignedHeaders=host,Signature=00", "gives Credential twice")]
    [InlineData("ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=00", "Credential is empty")]
    [InlineData("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=00,Scope=x", "unknown field 'Scope'")]
    [InlineData("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=Host;x-acs-date,Signature=00", "lower-case header names")]
    [InlineData("ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host;;x-acs-date,Signature=00", "lower-case header names")]
    public void A_malformed_Authorization_header_is_refused_with_the_reason(string header, string reason)
    {
        Assert.Null(Acs3Signature.ParseAuthorization(header, out var problem));
        Assert.Contains(reason, problem, StringComparison.Ordinal);
    }
}
