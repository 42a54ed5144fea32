using TdeEngine.Kms.Errors;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.Tests.Infrastructure;
using C = TdeEngine.Kms.Errors.KmsErrors.Codes;

namespace TdeEngine.Kms.Tests.KeyManagement;

public sealed class KeyLifecycleTests : IDisposable
{
    private readonly KmsFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public void CreateKey_defaults_follow_the_OpenAPI()
    {
        var m = _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { Description = "orders" });

        Assert.Matches("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", m.KeyId);
        Assert.Equal($"acs:kms:cn-hangzhou:{KmsFixture.Account}:key/{m.KeyId}", m.Arn);
        Assert.Equal("orders", m.Description);
        Assert.Equal("Aliyun_AES_256", m.KeySpec);
        Assert.Equal("ENCRYPT/DECRYPT", m.KeyUsage);
        Assert.Equal("Aliyun_KMS", m.Origin);
        Assert.Equal("SOFTWARE", m.ProtectionLevel);
        Assert.Equal(KmsFixture.Account, m.Creator);
        Assert.Equal(_f.Time.GetUtcNow(), m.CreationDate);
        Assert.Equal(KeyStates.Enabled, m.KeyState);
        Assert.NotNull(m.PrimaryKeyVersion);
        Assert.False(m.DeletionProtection);
        Assert.Equal("Disabled", m.AutomaticRotation);
        Assert.Null(m.DKMSInstanceId);
        Assert.False(m.IsServiceKey);
    }

    [Theory]
    [InlineData("KeySpec", "Aliyun_SM4")]
    [InlineData("KeyUsage", "SIGN/VERIFY")]
    [InlineData("Origin", "Somewhere")]
    [InlineData("ProtectionLevel", "QUANTUM")]
    public void CreateKey_refuses_unsupported_values(string parameter, string value)
    {
        var request = parameter switch
        {
            "KeySpec" => new CreateKeyRequest { KeySpec = value },
            "KeyUsage" => new CreateKeyRequest { KeyUsage = value },
            "Origin" => new CreateKeyRequest { Origin = value },
            _ => new CreateKeyRequest { ProtectionLevel = value },
        };

        var e = KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.CreateKey(_f.Me, request));
        Assert.Contains(parameter, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CreateKey_refuses_a_description_over_8192_characters()
    {
        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { Description = new string('d', 8193) }));
    }

    [Fact]
    public void An_HSM_key_without_an_HSM_backend_fails_clearly()
    {
        var e = KmsFixture.Fails(C.UnsupportedProtectionLevel, () => _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { ProtectionLevel = "HSM" }));
        Assert.Contains("HSM", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DescribeKey_accepts_id_arn_alias_and_alias_arn()
    {
        var m = _f.Kms.CreateKey(_f.Me, new CreateKeyRequest());
        _f.Kms.CreateAlias(_f.Me, "alias/orders", m.KeyId);

        foreach (var reference in new[] { m.KeyId, m.Arn, "alias/orders", $"acs:kms:cn-hangzhou:{KmsFixture.Account}:alias/orders" })
        {
            Assert.Equal(m.KeyId, _f.Kms.DescribeKey(_f.Me, reference).KeyId);
        }

        // A key ARN names a key id; an alias after key/ is no spelling of either (it resolved through
        // the alias, and a RAM refusal then named the key behind it).
        KmsFixture.Fails(C.KeyNotFound, () => _f.Kms.DescribeKey(_f.Me, $"acs:kms:cn-hangzhou:{KmsFixture.Account}:key/alias/orders"));
        KmsFixture.Fails(C.KeyNotFound, () => _f.Kms.GenerateDataKey(_f.Me, $"acs:kms:cn-hangzhou:{KmsFixture.Account}:key/alias/acs/rds", 32, TdeEngine.Kms.Envelope.EncryptionContext.Parse("{}")).Dispose());
    }

    [Fact]
    public void Keys_of_another_account_or_region_are_not_found()
    {
        var m = _f.Kms.CreateKey(_f.Me, new CreateKeyRequest());

        KmsFixture.Fails(C.KeyNotFound, () => _f.Kms.DescribeKey(_f.Stranger, m.KeyId));
        KmsFixture.Fails(C.KeyNotFound, () => _f.Kms.DescribeKey(_f.Stranger, m.Arn));
        KmsFixture.Fails(C.KeyNotFound, () => _f.Kms.DescribeKey(_f.Me, m.Arn.Replace("cn-hangzhou", "cn-beijing", StringComparison.Ordinal)));
        KmsFixture.Fails(C.KeyNotFound, () => _f.Kms.DescribeKey(_f.Me, Guid.NewGuid().ToString()));
        KmsFixture.Fails(C.AliasNotFound, () => _f.Kms.DescribeKey(_f.Me, "alias/nothing"));
        KmsFixture.Fails(C.MissingParameter, () => _f.Kms.DescribeKey(_f.Me, ""));
    }

    [Fact]
    public void ListKeys_pages_in_creation_order_within_the_account()
    {
        var ids = Enumerable.Range(0, 5).Select(i =>
        {
            _f.Time.Advance(TimeSpan.FromSeconds(1));
            return _f.NewKey();
        }).ToList();
        _f.Kms.CreateKey(_f.Stranger, new CreateKeyRequest());

        var first = _f.Kms.ListKeys(_f.Me, 1, 2);
        var last = _f.Kms.ListKeys(_f.Me, 3, 2);

        Assert.Equal(5, first.TotalCount);
        Assert.Equal(ids[..2], first.Items.Select(k => k.KeyId));
        Assert.Equal([ids[4]], last.Items.Select(k => k.KeyId));
        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.ListKeys(_f.Me, 1, 101));
        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.ListKeys(_f.Me, 0, 10));
    }

    [Fact]
    public void UpdateKeyDescription_replaces_the_description()
    {
        var id = _f.NewKey("old");

        _f.Kms.UpdateKeyDescription(_f.Me, id, "new");

        Assert.Equal("new", _f.Kms.DescribeKey(_f.Me, id).Description);
    }

    [Fact]
    public void Disable_and_enable_move_between_the_two_states_idempotently()
    {
        var id = _f.NewKey();

        _f.Kms.DisableKey(_f.Me, id);
        _f.Kms.DisableKey(_f.Me, id);
        Assert.Equal(KeyStates.Disabled, _f.Kms.DescribeKey(_f.Me, id).KeyState);

        _f.Kms.EnableKey(_f.Me, id);
        _f.Kms.EnableKey(_f.Me, id);
        Assert.Equal(KeyStates.Enabled, _f.Kms.DescribeKey(_f.Me, id).KeyState);
    }

    [Theory]
    [InlineData(6)]
    [InlineData(367)]
    [InlineData(0)]
    public void ScheduleKeyDeletion_window_is_7_to_366_days(int days)
    {
        var id = _f.NewKey();

        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.ScheduleKeyDeletion(_f.Me, id, days));
    }

    [Fact]
    public void A_key_pending_deletion_refuses_state_changes_and_use_until_cancelled()
    {
        var id = _f.NewKey();
        var blob = _f.Kms.Encrypt(_f.Me, id, "x"u8).CiphertextBlob;

        var when = _f.Kms.ScheduleKeyDeletion(_f.Me, id, 7);

        var m = _f.Kms.DescribeKey(_f.Me, id);
        Assert.Equal(KeyStates.PendingDeletion, m.KeyState);
        Assert.Equal(_f.Time.GetUtcNow().AddDays(7), when);
        Assert.Equal(when, m.DeleteDate);
        KmsFixture.Fails(C.StateModifiedFailed, () => _f.Kms.EnableKey(_f.Me, id));
        KmsFixture.Fails(C.StateModifiedFailed, () => _f.Kms.DisableKey(_f.Me, id));
        KmsFixture.Fails(C.StateModifiedFailed, () => _f.Kms.ScheduleKeyDeletion(_f.Me, id, 30));
        KmsFixture.Fails(C.PendingDeletion, () => _f.Kms.Decrypt(_f.Me, blob).Dispose());
        KmsFixture.Fails(C.PendingDeletion, () => _f.Kms.GenerateDataKey(_f.Me, id).Dispose());
        KmsFixture.Fails(C.PendingDeletion, () => _f.Kms.Encrypt(_f.Me, id, "x"u8));

        _f.Kms.CancelKeyDeletion(_f.Me, id);

        Assert.Equal(KeyStates.Enabled, _f.Kms.DescribeKey(_f.Me, id).KeyState);
        Assert.Null(_f.Kms.DescribeKey(_f.Me, id).DeleteDate);
        using var plain = _f.Kms.Decrypt(_f.Me, blob);
        Assert.Equal("x"u8.ToArray(), plain.Plaintext.Span.ToArray());
        KmsFixture.Fails(C.StateModifiedFailed, () => _f.Kms.CancelKeyDeletion(_f.Me, id));
    }

    [Fact]
    public void A_disabled_key_can_be_scheduled_for_deletion()
    {
        var id = _f.NewKey();
        _f.Kms.DisableKey(_f.Me, id);

        _f.Kms.ScheduleKeyDeletion(_f.Me, id, 7);

        Assert.Equal(KeyStates.PendingDeletion, _f.Kms.DescribeKey(_f.Me, id).KeyState);
    }

    [Fact]
    public void The_key_is_deleted_with_its_aliases_and_tags_when_the_window_passes()
    {
        var id = _f.NewKey();
        _f.Kms.CreateAlias(_f.Me, "alias/doomed", id);
        _f.Kms.TagResource(_f.Me, id, [new("env", "test")]);
        var blob = _f.Kms.Encrypt(_f.Me, id, "x"u8).CiphertextBlob;
        _f.Kms.ScheduleKeyDeletion(_f.Me, id, 7);

        _f.Time.Advance(TimeSpan.FromDays(7) - TimeSpan.FromSeconds(1));
        Assert.Empty(_f.Kms.RunHousekeeping().DeletedKeys);
        Assert.Equal(KeyStates.PendingDeletion, _f.Kms.DescribeKey(_f.Me, id).KeyState);

        _f.Time.Advance(TimeSpan.FromSeconds(1));
        var result = _f.Kms.RunHousekeeping();

        Assert.Equal([id], result.DeletedKeys);
        KmsFixture.Fails(C.KeyNotFound, () => _f.Kms.DescribeKey(_f.Me, id));
        KmsFixture.Fails(C.KeyNotFound, () => _f.Kms.Decrypt(_f.Me, blob).Dispose());
        KmsFixture.Fails(C.AliasNotFound, () => _f.Kms.DescribeKey(_f.Me, "alias/doomed"));
        Assert.Equal(0, _f.Kms.ListAliases(_f.Me).TotalCount);
        Assert.Equal(0, _f.Kms.ListKeys(_f.Me).TotalCount);
    }

    [Fact]
    public void A_key_whose_window_passed_is_gone_even_before_housekeeping_runs()
    {
        var id = _f.NewKey();
        _f.Kms.ScheduleKeyDeletion(_f.Me, id, 7);
        _f.Time.Advance(TimeSpan.FromDays(8));

        KmsFixture.Fails(C.KeyNotFound, () => _f.Kms.DescribeKey(_f.Me, id));
        Assert.Equal(0, _f.Kms.ListKeys(_f.Me).TotalCount);
    }

    [Fact]
    public void Deletion_protection_blocks_scheduling_until_it_is_turned_off()
    {
        var m = _f.Kms.CreateKey(_f.Me, new CreateKeyRequest());

        _f.Kms.SetDeletionProtection(_f.Me, m.Arn, true, "production");
        var described = _f.Kms.DescribeKey(_f.Me, m.KeyId);
        Assert.True(described.DeletionProtection);
        Assert.Equal("production", described.DeletionProtectionDescription);
        KmsFixture.Fails(C.DeletionProtected, () => _f.Kms.ScheduleKeyDeletion(_f.Me, m.KeyId, 7));

        _f.Kms.SetDeletionProtection(_f.Me, m.Arn, false);
        _f.Kms.ScheduleKeyDeletion(_f.Me, m.KeyId, 7);
        Assert.Equal(KeyStates.PendingDeletion, _f.Kms.DescribeKey(_f.Me, m.KeyId).KeyState);
        KmsFixture.Fails(C.StateModifiedFailed, () => _f.Kms.SetDeletionProtection(_f.Me, m.Arn, true));
    }

    [Fact]
    public void SetDeletionProtection_needs_the_key_ARN_of_the_callers_account()
    {
        var m = _f.Kms.CreateKey(_f.Me, new CreateKeyRequest());

        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.SetDeletionProtection(_f.Me, m.KeyId, true));
        KmsFixture.Fails(C.ResourceNotFound, () => _f.Kms.SetDeletionProtection(_f.Stranger, m.Arn, true));
    }

    [Fact]
    public void An_EXTERNAL_key_waits_for_material()
    {
        var m = _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { Origin = "EXTERNAL" });

        Assert.Equal(KeyStates.PendingImport, m.KeyState);
        Assert.Null(m.PrimaryKeyVersion);
        KmsFixture.Fails(C.PendingImport, () => _f.Kms.GenerateDataKey(_f.Me, m.KeyId).Dispose());
        KmsFixture.Fails(C.PendingImport, () => _f.Kms.Encrypt(_f.Me, m.KeyId, "x"u8));
        KmsFixture.Fails(C.StateModifiedFailed, () => _f.Kms.EnableKey(_f.Me, m.KeyId));
        KmsFixture.Fails(C.UnsupportedOperation, () => _f.Kms.UpdateRotationPolicy(_f.Me, m.KeyId, true, TimeSpan.FromDays(30)));
        KmsFixture.Fails(C.UnsupportedOperation,
            () => _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { Origin = "EXTERNAL", EnableAutomaticRotation = true, RotationInterval = TimeSpan.FromDays(30) }));

        _f.Kms.ScheduleKeyDeletion(_f.Me, m.KeyId, 7);
        _f.Kms.CancelKeyDeletion(_f.Me, m.KeyId);
        Assert.Equal(KeyStates.PendingImport, _f.Kms.DescribeKey(_f.Me, m.KeyId).KeyState);
    }

    [Fact]
    public void State_survives_a_restart()
    {
        var id = _f.NewKey("durable");
        _f.Kms.CreateAlias(_f.Me, "alias/durable", id);
        var blob = _f.Kms.Encrypt(_f.Me, "alias/durable", "persist"u8, null).CiphertextBlob;
        _f.Kms.DisableKey(_f.Me, id);

        _f.Restart();

        Assert.Equal("durable", _f.Kms.DescribeKey(_f.Me, "alias/durable").Description);
        KmsFixture.Fails(C.Disabled, () => _f.Kms.Decrypt(_f.Me, blob).Dispose());
        _f.Kms.EnableKey(_f.Me, id);
        using var plain = _f.Kms.Decrypt(_f.Me, blob);
        Assert.Equal("persist"u8.ToArray(), plain.Plaintext.Span.ToArray());
    }

    [Fact]
    public void A_change_made_by_another_KMS_over_the_same_store_is_seen()
    {
        var id = _f.NewKey();
        var blob = _f.Kms.Encrypt(_f.Me, id, "x"u8).CiphertextBlob;
        _f.Kms.Decrypt(_f.Me, blob).Dispose();   // warm the cache

        using (var other = _f.Open())
        {
            other.DisableKey(_f.Me, id);
        }

        KmsFixture.Fails(C.Disabled, () => _f.Kms.Decrypt(_f.Me, blob).Dispose());
    }
}
