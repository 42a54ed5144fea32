using System.Text;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Tests.Infrastructure;

namespace TdeEngine.Kms.Tests.Envelope;

public class EncryptionContextTests
{
    [Fact]
    public void Canonical_form_sorts_keys_and_has_no_whitespace()
    {
        var context = EncryptionContext.Parse("{ \"z\": \"1\", \"a\": \"2\", \"m\": \"3\" }");

        Assert.Equal("{\"a\":\"2\",\"m\":\"3\",\"z\":\"1\"}", Encoding.UTF8.GetString(context.CanonicalBytes));
    }

    [Fact]
    public void Canonical_form_matches_python_json_dumps_escaping()
    {
        // json.dumps({"k\"":"a\\b\n\u0001é","B":"x"}, sort_keys=True, separators=(",",":"), ensure_ascii=False)
        var context = EncryptionContext.From([new("k\"", "a\\b\n\u0001é"), new("B", "x")]);

        Assert.Equal("{\"B\":\"x\",\"k\\\"\":\"a\\\\b\\n\\u0001é\"}", Encoding.UTF8.GetString(context.CanonicalBytes));
    }

    [Fact]
    public void Keys_sort_by_code_point_not_by_UTF16_unit()
    {
        // U+1F600 (a surrogate pair in UTF-16) sorts after U+FF21 by code point, but before it by UTF-16 unit.
        var context = EncryptionContext.From([new("\U0001F600", "1"), new("\uFF21", "2")]);

        Assert.Equal("\uFF21", context.Pairs[0].Key);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("{}")]
    public void Empty_context_has_no_canonical_bytes(string? json)
    {
        var context = EncryptionContext.Parse(json);

        Assert.True(context.IsEmpty);
        Assert.Equal(0, context.CanonicalBytes.Length);
    }

    [Theory]
    [InlineData("[\"a\"]")]
    [InlineData("{\"a\":1}")]
    [InlineData("{\"a\":null}")]
    [InlineData("{\"a\":{\"b\":\"c\"}}")]
    [InlineData("not json")]
    [InlineData("{\"a\":\"1\",\"a\":\"2\"}")]
    [InlineData("{\"\":\"x\"}")]
    public void Malformed_context_is_InvalidParameter(string json)
    {
        var e = KmsFixture.Fails(KmsErrors.Codes.InvalidParameter, () => EncryptionContext.Parse(json));

        Assert.Contains("EncryptionContext", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Oversized_context_is_refused()
    {
        KmsFixture.Fails(KmsErrors.Codes.InvalidParameter,
            () => EncryptionContext.From([new("k", new string('x', EncryptionContext.MaxCanonicalBytes))]));
    }
}
