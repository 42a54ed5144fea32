using System.Text;
using System.Text.Json;
using TdeEngine.Kms.Api;
using TdeEngine.Kms.Tests.Infrastructure;

namespace TdeEngine.Kms.Tests.Api;

public sealed class KmsApiTests : IDisposable
{
    private readonly KmsFixture _f = new();
    private readonly KmsApi _api;

    public KmsApiTests() => _api = new KmsApi(_f.Kms);

    public void Dispose() => _f.Dispose();

    private JsonElement Ok(string action, params (string Name, string Value)[] parameters)
    {
        using var response = _api.Invoke(_f.Me, action, parameters.ToDictionary(p => p.Name, p => p.Value));
        var body = JsonDocument.Parse(response.Body.ToArray()).RootElement.Clone();
        Assert.True(response.IsSuccess, Encoding.UTF8.GetString(response.Body));
        Assert.Equal(200, response.HttpStatus);
        Assert.Equal(_f.Me.RequestId, body.GetProperty("RequestId").GetString());
        return body;
    }

    private (int Status, JsonElement Body) Error(string action, params (string Name, string Value)[] parameters)
    {
        using var response = _api.Invoke(_f.Me, action, parameters.ToDictionary(p => p.Name, p => p.Value));
        Assert.False(response.IsSuccess);
        var body = JsonDocument.Parse(response.Body.ToArray()).RootElement.Clone();
        Assert.Equal(["Code", "Message", "RequestId"], body.EnumerateObject().Select(p => p.Name));
        return (response.HttpStatus, body);
    }

    [Fact]
    public void CreateKey_and_DescribeKey_return_KeyMetadata()
    {
        var created = Ok("CreateKey", ("Description", "orders"), ("EnableAutomaticRotation", "true"), ("RotationInterval", "7d"));
        var keyId = created.GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;

        var m = Ok("DescribeKey", ("KeyId", keyId)).GetProperty("KeyMetadata");

        Assert.Equal("orders", m.GetProperty("Description").GetString());
        Assert.Equal("Enabled", m.GetProperty("KeyState").GetString());
        Assert.Equal("604800s", m.GetProperty("RotationInterval").GetString());
        Assert.Equal("Enabled", m.GetProperty("AutomaticRotation").GetString());
        Assert.Equal("Disabled", m.GetProperty("DeletionProtection").GetString());
        Assert.Equal("2026-01-01T00:00:00Z", m.GetProperty("CreationDate").GetString());
        Assert.Equal("2026-01-08T00:00:00Z", m.GetProperty("NextRotationDate").GetString());
        Assert.False(created.GetProperty("KeyMetadata").TryGetProperty("DeletionProtection", out _));
    }

    // DescribeKey reference: RotationInterval and NextRotationDate are returned only when AutomaticRotation
    // is Enabled or Suspended ("当AutomaticRotation取值为Enabled或Suspended时，返回该参数").
    [Fact]
    public void DescribeKey_omits_RotationInterval_once_automatic_rotation_is_turned_off()
    {
        var keyId = Ok("CreateKey", ("EnableAutomaticRotation", "true"), ("RotationInterval", "7d")).GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;

        Ok("UpdateRotationPolicy", ("KeyId", keyId), ("EnableAutomaticRotation", "false"));
        var m = Ok("DescribeKey", ("KeyId", keyId)).GetProperty("KeyMetadata");

        Assert.Equal("Disabled", m.GetProperty("AutomaticRotation").GetString());
        Assert.False(m.TryGetProperty("RotationInterval", out _));
        Assert.False(m.TryGetProperty("NextRotationDate", out _));
    }

    [Fact]
    public void Encrypt_takes_Base64_and_Decrypt_returns_it()
    {
        var keyId = _f.NewKey();
        var plaintext = Convert.ToBase64String("Hello world"u8);

        var encrypted = Ok("Encrypt", ("KeyId", keyId), ("Plaintext", plaintext), ("EncryptionContext", "{\"a\":\"b\"}"));
        var decrypted = Ok("Decrypt", ("CiphertextBlob", encrypted.GetProperty("CiphertextBlob").GetString()!), ("EncryptionContext", "{\"a\":\"b\"}"));

        Assert.Equal(keyId, encrypted.GetProperty("KeyId").GetString());
        Assert.Equal(plaintext, decrypted.GetProperty("Plaintext").GetString());
        Assert.Equal(encrypted.GetProperty("KeyVersionId").GetString(), decrypted.GetProperty("KeyVersionId").GetString());
    }

    [Theory]
    [InlineData(null, null, 32)]
    [InlineData("AES_128", null, 16)]
    [InlineData("AES_128", "64", 64)]
    public void GenerateDataKey_returns_a_Base64_key_of_the_requested_size(string? keySpec, string? numberOfBytes, int expected)
    {
        var keyId = _f.NewKey();
        var parameters = new List<(string, string)> { ("KeyId", keyId) };
        if (keySpec is not null)
        {
            parameters.Add(("KeySpec", keySpec));
        }

        if (numberOfBytes is not null)
        {
            parameters.Add(("NumberOfBytes", numberOfBytes));
        }

        var body = Ok("GenerateDataKey", [.. parameters]);
        var decrypted = Ok("Decrypt", ("CiphertextBlob", body.GetProperty("CiphertextBlob").GetString()!));

        Assert.Equal(expected, Convert.FromBase64String(body.GetProperty("Plaintext").GetString()!).Length);
        Assert.Equal(body.GetProperty("Plaintext").GetString(), decrypted.GetProperty("Plaintext").GetString());
        Assert.False(Ok("GenerateDataKeyWithoutPlaintext", ("KeyId", keyId)).TryGetProperty("Plaintext", out _));
    }

    [Fact]
    public void Lists_use_the_double_wrapped_shape_with_paging_fields()
    {
        var keyId = _f.NewKey();
        Ok("CreateAlias", ("AliasName", "alias/a"), ("KeyId", keyId));
        Ok("TagResource", ("KeyId", keyId), ("Tags", "[{\"TagKey\":\"env\",\"TagValue\":\"prod\"}]"));
        Ok("CreateKeyVersion", ("KeyId", keyId));

        var keys = Ok("ListKeys", ("PageSize", "5"));
        var aliases = Ok("ListAliasesByKeyId", ("KeyId", keyId));
        var tags = Ok("ListResourceTags", ("KeyId", keyId));
        var versions = Ok("ListKeyVersions", ("KeyId", keyId));

        Assert.Equal(keyId, keys.GetProperty("Keys").GetProperty("Key")[0].GetProperty("KeyId").GetString());
        Assert.Equal(1, keys.GetProperty("TotalCount").GetInt32());
        Assert.Equal(5, keys.GetProperty("PageSize").GetInt32());
        Assert.Equal("alias/a", aliases.GetProperty("Aliases").GetProperty("Alias")[0].GetProperty("AliasName").GetString());
        Assert.Equal("prod", tags.GetProperty("Tags").GetProperty("Tag")[0].GetProperty("TagValue").GetString());
        Assert.Equal(2, versions.GetProperty("KeyVersions").GetProperty("KeyVersion").GetArrayLength());
    }

    [Fact]
    public void ListKeys_filters_AND_across_keys_and_OR_across_values()
    {
        var enabled = _f.NewKey();
        var disabled = _f.NewKey();
        Ok("DisableKey", ("KeyId", disabled));
        Ok("GenerateDataKeyWithoutPlaintext", ("KeyId", "alias/acs/ecs"));

        string[] Ids(string filters) => Ok("ListKeys", ("Filters", filters)).GetProperty("Keys").GetProperty("Key").EnumerateArray()
            .Select(k => k.GetProperty("KeyId").GetString()!).ToArray();

        Assert.Equal([disabled], Ids("[{\"Key\":\"KeyState\",\"Values\":[\"Disabled\"]}]"));
        Assert.Equal([enabled, disabled], Ids("[{\"Key\":\"KeyState\",\"Values\":[\"Enabled\",\"Disabled\"]},{\"Key\":\"CreatorType\",\"Values\":[\"User\"]}]"));
        Assert.Single(Ids("[{\"Key\":\"CreatorType\",\"Values\":[\"Service\"]}]"));
        Assert.Equal("InvalidParameter", Error("ListKeys", ("Filters", "[{\"Key\":\"Color\",\"Values\":[\"x\"]}]")).Body.GetProperty("Code").GetString());
    }

    // Alibaba's ListKeys reference: "Filters不同Key之间的逻辑关系为AND，同一个Key中的多个Value之间的逻辑关系为OR",
    // with the example [{KeyState:[Enabled,Disabled]},{KeyState:[PendingDeletion]},{KeySpec:[Aliyun_AES_256]}] meaning
    // (KeyState=Enabled OR KeyState=Disabled OR KeyState=PendingDeletion) AND (KeySpec=Aliyun_AES_256).
    [Fact]
    public void ListKeys_filters_OR_the_values_of_a_key_given_twice()
    {
        var enabled = _f.NewKey();
        var disabled = _f.NewKey();
        Ok("DisableKey", ("KeyId", disabled));

        var keys = Ok("ListKeys", ("Filters",
            "[{\"Key\":\"KeyState\",\"Values\":[\"Enabled\"]},{\"Key\":\"KeyState\",\"Values\":[\"Disabled\"]},{\"Key\":\"KeySpec\",\"Values\":[\"Aliyun_AES_256\"]}]"));

        Assert.Equal([enabled, disabled], keys.GetProperty("Keys").GetProperty("Key").EnumerateArray().Select(k => k.GetProperty("KeyId").GetString()!));
    }

    [Fact]
    public void ListKeys_refuses_an_unknown_filter_key_also_when_there_are_no_keys()
    {
        var (status, body) = Error("ListKeys", ("Filters", "[{\"Key\":\"Color\",\"Values\":[\"x\"]}]"));

        Assert.Equal((400, "InvalidParameter"), (status, body.GetProperty("Code").GetString()));
    }

    // UpdateKeyDescription reference: Description is required; the call can add, change or delete
    // ("添加、变更、删除") the description, so an empty Description clears it but an absent one is an error.
    [Fact]
    public void UpdateKeyDescription_without_a_Description_is_MissingParameter_and_an_empty_one_clears_it()
    {
        var keyId = _f.NewKey("orders");

        var (status, body) = Error("UpdateKeyDescription", ("KeyId", keyId));
        var kept = _f.Kms.DescribeKey(_f.Me, keyId).Description;
        Ok("UpdateKeyDescription", ("KeyId", keyId), ("Description", ""));

        Assert.Equal((400, "MissingParameter"), (status, body.GetProperty("Code").GetString()));
        Assert.Equal("orders", kept);
        Assert.Equal("", _f.Kms.DescribeKey(_f.Me, keyId).Description);
    }

    [Fact]
    public void Every_state_changing_action_returns_just_a_RequestId()
    {
        var keyId = _f.NewKey();
        var arn = _f.Kms.DescribeKey(_f.Me, keyId).Arn;

        foreach (var (action, parameters) in new (string, (string, string)[])[]
        {
            ("UpdateKeyDescription", [("KeyId", keyId), ("Description", "d")]),
            ("DisableKey", [("KeyId", keyId)]),
            ("EnableKey", [("KeyId", keyId)]),
            ("CreateAlias", [("AliasName", "alias/x"), ("KeyId", keyId)]),
            ("UpdateAlias", [("AliasName", "alias/x"), ("KeyId", keyId)]),
            ("DeleteAlias", [("AliasName", "alias/x")]),
            ("TagResource", [("KeyId", keyId), ("Tags", "[{\"TagKey\":\"a\",\"TagValue\":\"b\"}]")]),
            ("UntagResource", [("KeyId", keyId), ("TagKeys", "[\"a\"]")]),
            ("UpdateRotationPolicy", [("KeyId", keyId), ("EnableAutomaticRotation", "true"), ("RotationInterval", "604800s")]),
            ("SetDeletionProtection", [("ProtectedResourceArn", arn), ("EnableDeletionProtection", "false")]),
            ("ScheduleKeyDeletion", [("KeyId", keyId), ("PendingWindowInDays", "7")]),
            ("CancelKeyDeletion", [("KeyId", keyId)]),
        })
        {
            var body = Ok(action, parameters);
            Assert.Equal(["RequestId"], body.EnumerateObject().Select(p => p.Name));
        }
    }

    [Fact]
    public void Errors_carry_the_Alibaba_code_status_and_request_id()
    {
        var keyId = _f.NewKey();
        Ok("DisableKey", ("KeyId", keyId));

        var disabled = Error("GenerateDataKey", ("KeyId", keyId));
        var missing = Error("DescribeKey", ("KeyId", Guid.NewGuid().ToString()));
        var noAlias = Error("DescribeKey", ("KeyId", "alias/none"));
        var noParam = Error("DescribeKey");
        var badBlob = Error("Decrypt", ("CiphertextBlob", "not base64!"));
        var badBool = Error("UpdateRotationPolicy", ("KeyId", keyId), ("EnableAutomaticRotation", "maybe"));
        var unknown = Error("MakeCoffee");
        var badBase64 = Error("Encrypt", ("KeyId", keyId), ("Plaintext", "%%%"));

        Assert.Equal((409, "Rejected.Disabled"), (disabled.Status, disabled.Body.GetProperty("Code").GetString()));
        Assert.Equal((404, "Forbidden.KeyNotFound"), (missing.Status, missing.Body.GetProperty("Code").GetString()));
        Assert.Equal((404, "Forbidden.AliasNotFound"), (noAlias.Status, noAlias.Body.GetProperty("Code").GetString()));
        Assert.Equal((400, "MissingParameter"), (noParam.Status, noParam.Body.GetProperty("Code").GetString()));
        Assert.Equal((400, "InvalidCiphertext"), (badBlob.Status, badBlob.Body.GetProperty("Code").GetString()));
        Assert.Equal((400, "InvalidParameter"), (badBool.Status, badBool.Body.GetProperty("Code").GetString()));
        Assert.Equal((404, "InvalidAction.NotFound"), (unknown.Status, unknown.Body.GetProperty("Code").GetString()));
        Assert.Equal((400, "InvalidParameter"), (badBase64.Status, badBase64.Body.GetProperty("Code").GetString()));
        Assert.Equal(_f.Me.RequestId, disabled.Body.GetProperty("RequestId").GetString());
        Assert.Contains("EnableKey", disabled.Body.GetProperty("Message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public void An_unexpected_failure_is_InternalFailure_without_details()
    {
        _f.Kms.Dispose();   // the store is closed under the API: an internal fault, not a user error

        var (status, body) = Error("ListKeys");

        Assert.Equal(500, status);
        Assert.Equal("InternalFailure", body.GetProperty("Code").GetString());
        Assert.DoesNotContain("Exception", body.GetProperty("Message").GetString(), StringComparison.Ordinal);
        _f.Restart();
    }

    [Fact]
    public void CreateKmsInstance_returns_its_id_and_ReEncrypt_the_destination_key()
    {
        var instance = Ok("CreateKmsInstance", ("ProductType", "software"), ("KeyNum", "100"), ("Spec", "1000")).GetProperty("KmsInstanceId").GetString()!;
        var source = _f.NewKey();
        var destination = Ok("CreateKey", ("DKMSInstanceId", instance)).GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
        var blob = Ok("GenerateDataKey", ("KeyId", source)).GetProperty("CiphertextBlob").GetString()!;

        var moved = Ok("ReEncrypt", ("CiphertextBlob", blob), ("DestinationKeyId", destination));

        Assert.StartsWith("kst-", instance, StringComparison.Ordinal);
        Assert.Equal(destination, moved.GetProperty("KeyId").GetString());
        Assert.Equal(destination, Ok("Decrypt", ("CiphertextBlob", moved.GetProperty("CiphertextBlob").GetString()!)).GetProperty("KeyId").GetString());
    }

    // ListKmsInstances reference: KmsInstanceArn "acs:kms:pre-hangzhou:120708975881****:keystore/kst-phzz64c9f84eo32dbs****".
    [Fact]
    public void ListKmsInstances_names_an_instance_by_its_keystore_ARN()
    {
        var instance = Ok("CreateKmsInstance", ("ProductType", "software")).GetProperty("KmsInstanceId").GetString()!;

        var listed = Ok("ListKmsInstances").GetProperty("KmsInstances").GetProperty("KmsInstance")[0];

        Assert.Equal($"acs:kms:{_f.Kms.RegionId}:{KmsFixture.Account}:keystore/{instance}", listed.GetProperty("KmsInstanceArn").GetString());
    }

    // ListKmsInstances reference: "PageSize ... Valid values: 1 to 100. Default value: 20." (ListKeys and the
    // other lists default to 10.)
    [Fact]
    public void ListKmsInstances_returns_20_instances_a_page_by_default()
    {
        for (var i = 0; i < 21; i++)
        {
            Ok("CreateKmsInstance", ("ProductType", "software"));
        }

        var page = Ok("ListKmsInstances");

        Assert.Equal(20, page.GetProperty("PageSize").GetInt32());
        Assert.Equal(20, page.GetProperty("KmsInstances").GetProperty("KmsInstance").GetArrayLength());
        Assert.Equal(21, page.GetProperty("TotalCount").GetInt32());
    }

    [Fact]
    public void Every_documented_action_is_served()
    {
        string[] expected =
        [
            "CancelKeyDeletion", "CreateAlias", "CreateKey", "CreateKeyVersion", "CreateKmsInstance", "Decrypt", "DeleteAlias",
            "DeleteKeyMaterial", "DescribeKey", "DescribeKeyVersion", "DisableKey", "EnableKey", "Encrypt", "GenerateDataKey",
            "GenerateDataKeyWithoutPlaintext", "GetParametersForImport", "ImportKeyMaterial", "ListAliases", "ListAliasesByKeyId", "ListKeyVersions", "ListKeys", "ListKmsInstances", "ListResourceTags", "ReEncrypt",
            "ScheduleKeyDeletion", "SetDeletionProtection", "TagResource", "UntagResource", "UpdateAlias", "UpdateKeyDescription",
            "UpdateRotationPolicy",
        ];

        Assert.Equal(expected, KmsApi.Actions.Select(a => a.Action));
    }

    // Valid JSON and digits that .NET cannot represent once decoded must still be a 400 with the
    // parameter's name, never a 500 (a 5xx invites retries and hides the caller's mistake).
    [Theory]
    [InlineData("CreateKey", "EnableAutomaticRotation=true", "RotationInterval=999999999d", "RotationInterval")]
    [InlineData("CreateKey", "RotationInterval=99999999d", "", "RotationInterval")]
    [InlineData("UpdateRotationPolicy", "EnableAutomaticRotation=true", "RotationInterval=999999999d", "RotationInterval")]
    [InlineData("GenerateDataKey", "EncryptionContext={\"a\":\"\\ud800\"}", "", "EncryptionContext")]
    [InlineData("Encrypt", "EncryptionContext={\"\\udc00\":\"v\"}", "Plaintext=aGk=", "EncryptionContext")]
    [InlineData("CreateKey", "Tags=[{\"TagKey\":\"\\ud800\",\"TagValue\":\"v\"}]", "", "Tags")]
    public void Input_that_overflows_or_decodes_to_invalid_text_is_InvalidParameter(string action, string first, string second, string parameter)
    {
        var keyId = _f.NewKey();
        var parameters = new[] { first, second }.Where(p => p.Length > 0).Select(p => (p[..p.IndexOf('=')], p[(p.IndexOf('=') + 1)..])).ToList();
        if (action is not "CreateKey")
        {
            parameters.Add(("KeyId", keyId));
        }

        var (status, body) = Error(action, [.. parameters]);

        Assert.Equal(400, status);
        Assert.Equal("InvalidParameter", body.GetProperty("Code").GetString());
        Assert.Contains(parameter, body.GetProperty("Message").GetString(), StringComparison.Ordinal);
    }
}
