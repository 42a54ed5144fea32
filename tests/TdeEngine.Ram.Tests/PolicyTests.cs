using TdeEngine.Kms.Errors;
using TdeEngine.Ram.Policies;

namespace TdeEngine.Ram.Tests;

public class PolicyTests
{
    private const string Key = "acs:kms:cn-hangzhou:1111:key/k1";

    private static AccessRequest Request(string action = "kms:Decrypt", string resource = Key, params (string Key, string Value)[] context) =>
        new(action, resource, context.GroupBy(c => c.Key, StringComparer.OrdinalIgnoreCase)
            .ToDictionary(g => g.Key, g => (IReadOnlyList<string>)g.Select(c => c.Value).ToList(), StringComparer.OrdinalIgnoreCase));

    private static AccessDecision Decide(string document, AccessRequest request) =>
        PolicyEvaluator.Evaluate([new AttachedPolicy("p", "Custom", PolicyDocument.Parse(document))], request);

    [Theory]
    [InlineData("", "PolicyDocument")]
    [InlineData("[]", "PolicyDocument")]
    [InlineData("{\"Version\":\"2\",\"Statement\":[]}", "Version")]
    [InlineData("{\"Version\":\"1\"}", "Statement")]
    [InlineData("{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Maybe\",\"Action\":\"kms:*\",\"Resource\":\"*\"}]}", "Statement[0].Effect")]
    [InlineData("{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Allow\",\"Resource\":\"*\"}]}", "Statement[0].Action")]
    [InlineData("{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"Decrypt\",\"Resource\":\"*\"}]}", "Statement[0].Action")]
    [InlineData("{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":[]}]}", "Statement[0].Resource")]
    [InlineData("{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\",\"Condition\":{\"Equals\":{}}}]}", "Statement[0].Condition.Equals")]
    [InlineData("{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\",\"Condition\":{\"IpAddress\":{\"acs:SourceIp\":\"10.0.0.300\"}}}]}", "Statement[0].Condition.IpAddress.acs:SourceIp")]
    [InlineData("{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\",\"Extra\":1}]}", "Statement[0].Extra")]
    [InlineData("{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Deny\",\"Action\":\"kms:*\",\"Resource\":\"*\",\"Condition\":{\"NotIpAddress\":{\"acs:SourceIp\":[]}}}]}", "Statement[0].Condition.NotIpAddress.acs:SourceIp")]
    [InlineData("{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\",\"Condition\":{\"StringEquals\":{}}}]}", "Statement[0].Condition.StringEquals")]
    // Valid JSON whose escapes decode to invalid UTF-16 (a lone surrogate), in a value and in a name.
    [InlineData("{\"Version\":\"\\ud800\",\"Statement\":[]}", "PolicyDocument")]
    [InlineData("{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:\\ud800\",\"Resource\":\"*\"}]}", "PolicyDocument")]
    [InlineData("{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\",\"Condition\":{\"StringEquals\":{\"kms:tag/\\udc00\":\"x\"}}}]}", "PolicyDocument")]
    public void A_malformed_policy_names_the_offending_field(string json, string field)
    {
        var e = Assert.Throws<KmsException>(() => PolicyDocument.Parse(json));

        Assert.Equal("MalformedPolicyDocument", e.Code);
        Assert.Contains($"at {field}:", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"Version":"1","Statement":[{"Effect":"Deny","Effect":"Allow","Action":"kms:*","Resource":"*"}]}""")]
    [InlineData("""{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"IpAddress":{"acs:SourceIp":"10.0.0.0/8"}},"Condition":{}}]}""")]
    [InlineData("""{"Version":"1","Statement":[{"Effect":"Deny","Action":"kms:*","Resource":"*"}],"Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}""")]
    public void A_field_named_twice_is_refused_rather_than_read_as_one_of_its_values(string json)
    {
        // A reader that takes the first value would see a Deny or a condition that the evaluator, taking the last, ignores.
        var e = Assert.Throws<KmsException>(() => PolicyDocument.Parse(json));
        var trust = Assert.Throws<KmsException>(() => TrustPolicy.Parse(json.Replace("\"Resource\":\"*\"", "\"Principal\":{\"RAM\":\"acs:ram::1:root\"}", StringComparison.Ordinal)
            .Replace("kms:*", "sts:AssumeRole", StringComparison.Ordinal)));

        Assert.Equal("MalformedPolicyDocument", e.Code);
        Assert.Equal("MalformedPolicyDocument", trust.Code);
    }

    [Fact]
    public void Explicit_deny_beats_allow_and_nothing_matching_is_an_implicit_deny()
    {
        const string allowAll = """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}""";
        const string denyDecrypt = """{"Version":"1","Statement":[{"Effect":"Deny","Action":"kms:Decrypt","Resource":"acs:kms:*:*:key/*"}]}""";
        AttachedPolicy[] both = [new("allow", "Custom", PolicyDocument.Parse(allowAll)), new("deny", "Custom", PolicyDocument.Parse(denyDecrypt))];

        var decrypt = PolicyEvaluator.Evaluate(both, Request("kms:Decrypt"));
        var encrypt = PolicyEvaluator.Evaluate(both, Request("kms:Encrypt"));
        var nothing = PolicyEvaluator.Evaluate([], Request());

        Assert.Equal((false, "ExplicitDeny", "deny", 0), (decrypt.Allowed, decrypt.Reason, decrypt.PolicyName, decrypt.StatementIndex));
        Assert.Equal((true, "ExplicitAllow", "allow"), (encrypt.Allowed, encrypt.Reason, encrypt.PolicyName));
        Assert.Equal((false, "ImplicitDeny"), (nothing.Allowed, nothing.Reason));
    }

    [Theory]
    [InlineData("kms:*", "kms:GenerateDataKey", true)]
    [InlineData("kms:Generate*", "kms:GenerateDataKeyWithoutPlaintext", true)]
    [InlineData("kms:generatedatakey", "kms:GenerateDataKey", true)]
    [InlineData("kms:Generate*", "kms:Decrypt", false)]
    [InlineData("ram:*", "kms:Decrypt", false)]
    public void Actions_match_with_wildcards_ignoring_case(string pattern, string action, bool allowed)
    {
        var decision = Decide($$"""{"Version":"1","Statement":[{"Effect":"Allow","Action":"{{pattern}}","Resource":"*"}]}""", Request(action));

        Assert.Equal(allowed, decision.Allowed);
    }

    [Fact]
    public void NotAction_covers_every_action_but_the_ones_it_lists()
    {
        const string allowAllButDeletion = """{"Version":"1","Statement":[{"Effect":"Allow","NotAction":["kms:ScheduleKeyDeletion","kms:Delete*"],"Resource":"*"}]}""";
        const string denyAllButDecrypt = """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","NotAction":"kms:Decrypt","Resource":"acs:kms:*:*:key/*"}]}""";

        Assert.True(Decide(allowAllButDeletion, Request("kms:Decrypt")).Allowed);
        Assert.Equal("ImplicitDeny", Decide(allowAllButDeletion, Request("kms:ScheduleKeyDeletion")).Reason);
        Assert.Equal("ImplicitDeny", Decide(allowAllButDeletion, Request("kms:deletealias")).Reason);   // actions ignore case, in NotAction too
        Assert.Equal(("ExplicitAllow", 0), (Decide(denyAllButDecrypt, Request("kms:Decrypt")).Reason, Decide(denyAllButDecrypt, Request("kms:Decrypt")).StatementIndex));
        Assert.Equal(("ExplicitDeny", 1), (Decide(denyAllButDecrypt, Request("kms:Encrypt")).Reason, Decide(denyAllButDecrypt, Request("kms:Encrypt")).StatementIndex));
        // The Deny's Resource still scopes it: an action on another resource is not denied by it.
        Assert.True(Decide(denyAllButDecrypt, Request("kms:ListKeys", "acs:kms:cn-hangzhou:1111:*")).Allowed);
    }

    [Theory]
    [InlineData("""{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","NotAction":"kms:Decrypt","Resource":"*"}]}""", "Statement[0].NotAction")]
    [InlineData("""{"Version":"1","Statement":[{"Effect":"Allow","NotAction":"Decrypt","Resource":"*"}]}""", "Statement[0].NotAction")]
    [InlineData("""{"Version":"1","Statement":[{"Effect":"Allow","NotAction":[],"Resource":"*"}]}""", "Statement[0].NotAction")]
    public void A_malformed_NotAction_names_the_field(string json, string field)
    {
        var e = Assert.Throws<KmsException>(() => PolicyDocument.Parse(json));

        Assert.Equal("MalformedPolicyDocument", e.Code);
        Assert.Contains($"at {field}:", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("acs:kms:*:*:key/*", true)]
    [InlineData("acs:kms:cn-hangzhou:1111:key/k1", true)]
    [InlineData("acs:kms:cn-beijing:*:key/*", false)]
    [InlineData("acs:kms:*:2222:*", false)]
    [InlineData("acs:kms:*:*:key/k?", true)]
    public void Resources_match_ARN_patterns(string pattern, bool allowed)
    {
        var decision = Decide($$"""{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:Decrypt","Resource":"{{pattern}}"}]}""", Request());

        Assert.Equal(allowed, decision.Allowed);
    }

    [Fact]
    public void Conditions_on_encryption_context_source_ip_tags_and_bools()
    {
        const string policy = """
            {"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{
              "StringEquals":{"kms:EncryptionContext:db":["orders","invoices"]},
              "StringLike":{"kms:tag/env":"prod-*"},
              "IpAddress":{"acs:SourceIp":["10.0.0.0/8","127.0.0.1"]},
              "NotIpAddress":{"acs:SourceIp":"10.9.0.0/16"},
              "Bool":{"acs:SecureTransport":"true"}}}]}
            """;
        (string, string)[] good = [("kms:EncryptionContext:db", "orders"), ("kms:tag/env", "prod-eu"), ("acs:SourceIp", "10.1.2.3"), ("acs:SecureTransport", "true")];

        Assert.True(Decide(policy, Request(context: good)).Allowed);
        Assert.False(Decide(policy, Request(context: [.. good.Where(c => c.Item1 != "kms:EncryptionContext:db")])).Allowed);   // missing key
        Assert.False(Decide(policy, Request(context: [.. good.Select(c => c.Item1 == "kms:EncryptionContext:db" ? (c.Item1, "payroll") : c)])).Allowed);
        Assert.False(Decide(policy, Request(context: [.. good.Select(c => c.Item1 == "kms:tag/env" ? (c.Item1, "dev") : c)])).Allowed);
        Assert.False(Decide(policy, Request(context: [.. good.Select(c => c.Item1 == "acs:SourceIp" ? (c.Item1, "192.168.1.1") : c)])).Allowed);
        Assert.False(Decide(policy, Request(context: [.. good.Select(c => c.Item1 == "acs:SourceIp" ? (c.Item1, "10.9.1.1") : c)])).Allowed);
        Assert.False(Decide(policy, Request(context: [.. good.Select(c => c.Item1 == "acs:SecureTransport" ? (c.Item1, "false") : c)])).Allowed);
        Assert.True(Decide(policy, Request(context: [.. good.Select(c => c.Item1 == "KMS:ENCRYPTIONCONTEXT:DB" ? c : c)])).Allowed);
    }

    [Fact]
    public void A_missing_key_passes_the_negated_operators_and_fails_the_others()
    {
        string Deny(string op, string key, string value) =>
            """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:*","Resource":"*","Condition":{"""
            + $"\"{op}\":{{\"{key}\":\"{value}\"}}" + "}}]}";

        // "Deny unless from the office range": a call without a source address is not from it.
        Assert.Equal("ExplicitDeny", Decide(Deny("NotIpAddress", "acs:SourceIp", "10.0.0.0/8"), Request()).Reason);
        Assert.Equal("ExplicitDeny", Decide(Deny("StringNotEquals", "kms:EncryptionContext:db", "orders"), Request()).Reason);
        Assert.Equal("ExplicitDeny", Decide(Deny("StringNotLike", "kms:tag/env", "prod-*"), Request()).Reason);
        Assert.Equal("ExplicitAllow", Decide(Deny("IpAddress", "acs:SourceIp", "10.0.0.0/8"), Request()).Reason);
        Assert.Equal("ExplicitAllow", Decide(Deny("StringEquals", "kms:EncryptionContext:db", "orders"), Request()).Reason);
        Assert.Equal("ExplicitAllow", Decide(Deny("Bool", "acs:SecureTransport", "false"), Request()).Reason);
    }

    [Fact]
    public void An_IPv6_source_and_a_mapped_IPv4_address_are_handled()
    {
        const string policy = """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"IpAddress":{"acs:SourceIp":["127.0.0.0/8","::1"]}}}]}""";

        Assert.True(Decide(policy, Request(context: [("acs:SourceIp", "::ffff:127.0.0.1")])).Allowed);
        Assert.True(Decide(policy, Request(context: [("acs:SourceIp", "::1")])).Allowed);
        Assert.False(Decide(policy, Request(context: [("acs:SourceIp", "::2")])).Allowed);
    }

    [Theory]
    [InlineData("10.1/16")]
    [InlineData("10.1")]
    [InlineData("10")]
    [InlineData("167772161")]
    [InlineData("0x0a.0.0.1")]
    [InlineData("010.0.0.1")]
    [InlineData("10.0.0.256")]
    [InlineData("10.0.0.1/33")]
    [InlineData("10.0.0.1/")]
    [InlineData("10.0.0.1/+8")]
    [InlineData(" 10.0.0.1")]
    [InlineData("10.0.0.1%eth0")]
    [InlineData("fe80::1%eth0")]
    [InlineData("fe80::1%2/64")]
    [InlineData("::1/129")]
    [InlineData("::ffff:10.0.0.0/95")]
    public void An_address_that_is_not_a_dotted_quad_or_a_plain_IPv6_address_is_refused_naming_the_field(string range)
    {
        var e = Assert.Throws<KmsException>(() => PolicyDocument.Parse(
            $$$$"""{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"NotIpAddress":{"acs:SourceIp":["10.0.0.0/8","{{{{range}}}}"]}}}]}"""));

        Assert.Equal("MalformedPolicyDocument", e.Code);
        Assert.Contains("at Statement[0].Condition.NotIpAddress.acs:SourceIp:", e.Message, StringComparison.Ordinal);
        Assert.Contains($"'{range}'", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("::ffff:10.0.0.0/104", "10.1.2.3", true)]
    [InlineData("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", true)]
    [InlineData("::ffff:10.0.0.0/104", "11.1.2.3", false)]
    [InlineData("::ffff:10.0.0.7", "10.0.0.7", true)]
    [InlineData("::ffff:10.0.0.7", "10.0.0.8", false)]
    [InlineData("::ffff:0:0/96", "192.168.1.1", true)]
    [InlineData("10.1.0.0/16", "10.1.200.3", true)]
    [InlineData("10.1.0.0/16", "10.0.0.1", false)]
    [InlineData("2001:db8::/32", "2001:db8::5", true)]
    public void IPv4_mapped_IPv6_ranges_match_IPv4_callers(string range, string caller, bool inRange)
    {
        var deny = $$$$"""{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:*","Resource":"*","Condition":{"IpAddress":{"acs:SourceIp":"{{{{range}}}}"}}}]}""";

        var decision = Decide(deny, Request(context: [("acs:SourceIp", caller)]));

        Assert.Equal(inRange ? "ExplicitDeny" : "ExplicitAllow", decision.Reason);
    }

    [Fact]
    public void A_condition_key_with_several_values_must_match_in_every_value_to_allow_and_in_any_value_to_deny()
    {
        const string allowOrders = """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:Tenant":"orders"}}}]}""";
        const string allowLikeOrders = """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*","Condition":{"StringLike":{"kms:EncryptionContext:Tenant":"ord*"}}}]}""";
        const string denyPayroll = """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:Tenant":"payroll"}}}]}""";
        const string denyNotOrders = """{"Version":"1","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:*","Resource":"*","Condition":{"StringNotEquals":{"kms:EncryptionContext:Tenant":"orders"}}}]}""";
        (string, string)[] mixed = [("kms:EncryptionContext:Tenant", "payroll"), ("kms:EncryptionContext:tenant", "orders")];
        (string, string)[] both = [("kms:EncryptionContext:Tenant", "orders"), ("kms:EncryptionContext:tenant", "orders")];

        Assert.False(Decide(allowOrders, Request(context: mixed)).Allowed);
        Assert.False(Decide(allowLikeOrders, Request(context: mixed)).Allowed);
        Assert.Equal("ExplicitDeny", Decide(denyPayroll, Request(context: [("kms:EncryptionContext:tenant", "orders"), ("kms:EncryptionContext:Tenant", "payroll")])).Reason);
        Assert.Equal("ExplicitDeny", Decide(denyNotOrders, Request(context: mixed)).Reason);
        Assert.True(Decide(allowOrders, Request(context: both)).Allowed);
        Assert.True(Decide(allowLikeOrders, Request(context: both)).Allowed);
        Assert.True(Decide(denyPayroll, Request(context: both)).Allowed);
        Assert.True(Decide(denyNotOrders, Request(context: both)).Allowed);
    }
}
