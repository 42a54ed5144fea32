using System.Buffers;
using System.Text;
using TdeEngine.Kms.Api;
using Xunit;

namespace TdeEngine.Kms.Tests.Api;

public class RpcSignatureTests
{
    // Expected values computed independently with Python (urllib.parse.quote(safe="-_.~"), hmac,
    // hashlib.sha1): parameters sorted by encoded name, non-ASCII and reserved characters included.
    private static readonly Dictionary<string, string> Request = new(StringComparer.Ordinal)
    {
        ["Action"] = "Encrypt", ["Version"] = "2016-01-20", ["AccessKeyId"] = "testid", ["SignatureMethod"] = "HMAC-SHA1",
        ["SignatureVersion"] = "1.0", ["SignatureNonce"] = "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf", ["Timestamp"] = "2026-11-28T12:00:00Z",
        ["Format"] = "JSON", ["KeyId"] = "alias/orders", ["Plaintext"] = "aGVsbG8gd29ybGQ=", ["EncryptionContext"] = "{\"db\":\"订单 & more*~\"}",
        ["a b"] = "x+y/z",
    };

    private static byte[] Secret => "testsecret"u8.ToArray();

    [Fact]
    public void The_signature_matches_an_independent_implementation()
    {
        Assert.Equal("k1uMEOAO3oTN88lcZKCadW40+14=", RpcSignature.Compute("POST", Request, Secret));
        Assert.Equal("k1uMEOAO3oTN88lcZKCadW40+14=", RpcSignature.Compute("post", Request, Secret));
    }

    [Fact]
    public void Signing_leaves_no_parameter_value_in_the_shared_array_pool()
    {
        // An Encrypt request carries the secret itself (Base64, here of 600 random bytes).
        var plaintext = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(600));
        var request = new Dictionary<string, string>(Request, StringComparer.Ordinal) { ["Plaintext"] = plaintext };

        var signature = RpcSignature.Compute("POST", request, Secret);
        Assert.True(RpcSignature.Verify("POST", request, Secret, signature));

        // In the string to sign the value is percent-encoded twice; letters and digits stay as they are.
        var run = Encoding.ASCII.GetBytes(plaintext.Split('+', '/', '=').OrderByDescending(p => p.Length).First());
        for (var size = 16; size <= 1 << 20; size *= 2)
        {
            var rented = ArrayPool<byte>.Shared.Rent(size);
            try
            {
                Assert.True(rented.AsSpan().IndexOf(run) < 0, $"The Plaintext parameter was found in a pooled array of {rented.Length} bytes.");
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented, clearArray: true);
            }
        }
    }

    [Fact]
    public void Verify_accepts_the_right_signature_and_ignores_the_Signature_parameter_itself()
    {
        var signed = new Dictionary<string, string>(Request, StringComparer.Ordinal) { ["Signature"] = "k1uMEOAO3oTN88lcZKCadW40+14=" };
        Assert.True(RpcSignature.Verify("POST", signed, Secret, signed["Signature"]));
    }

    [Theory]
    [InlineData("k1uMEOAO3oTN88lcZKCadW40+15=")]   // one bit off
    [InlineData("k1uMEOAO3oTN88lcZKCadW40+14")]    // truncated
    [InlineData("k1uMEOAO3oTN88lcZKCadW40+14==")]  // too long
    [InlineData("k1uMEOAO3oTN88lcZKCadW40+1é=")]   // not ASCII
    [InlineData("")]
    public void Verify_refuses_any_other_signature(string given) =>
        Assert.False(RpcSignature.Verify("POST", Request, Secret, given));

    [Fact]
    public void Any_changed_parameter_secret_or_method_changes_the_signature()
    {
        var changed = new Dictionary<string, string>(Request, StringComparer.Ordinal) { ["KeyId"] = "alias/order" };
        Assert.False(RpcSignature.Verify("POST", changed, Secret, "k1uMEOAO3oTN88lcZKCadW40+14="));
        Assert.False(RpcSignature.Verify("GET", Request, Secret, "k1uMEOAO3oTN88lcZKCadW40+14="));
        Assert.False(RpcSignature.Verify("POST", Request, "testsecreT"u8.ToArray(), "k1uMEOAO3oTN88lcZKCadW40+14="));
    }

    [Theory]
    [InlineData("abcXYZ019-_.~", "abcXYZ019-_.~")]
    [InlineData("a b+c/d*", "a%20b%2Bc%2Fd%2A")]
    [InlineData("订", "%E8%AE%A2")]
    public void Encode_is_RFC_3986(string value, string expected) => Assert.Equal(expected, RpcSignature.Encode(value));
}
