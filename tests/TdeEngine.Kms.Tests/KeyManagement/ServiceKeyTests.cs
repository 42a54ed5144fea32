using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.Tests.Infrastructure;
using C = TdeEngine.Kms.Errors.KmsErrors.Codes;

namespace TdeEngine.Kms.Tests.KeyManagement;

public sealed class ServiceKeyTests : IDisposable
{
    private readonly KmsFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public void The_service_key_is_created_on_first_use_and_reused()
    {
        KmsFixture.Fails(C.AliasNotFound, () => _f.Kms.DescribeKey(_f.Me, "alias/acs/rds"));

        using var first = _f.Kms.GenerateDataKey(_f.Me, "alias/acs/rds");
        using var second = _f.Kms.GenerateDataKey(_f.Me, "alias/acs/rds");

        Assert.Equal(first.KeyId, second.KeyId);
        var m = _f.Kms.DescribeKey(_f.Me, "alias/acs/rds");
        Assert.Equal(first.KeyId, m.KeyId);
        Assert.True(m.IsServiceKey);
        Assert.Equal("Rds", m.Creator);
        Assert.Equal("Service Key", m.KeyUsage);
        Assert.Equal(KeyStates.Enabled, m.KeyState);
        Assert.Single(_f.Kms.ListAliases(_f.Me).Items, a => a.AliasName == "alias/acs/rds");
    }

    [Fact]
    public void Each_product_and_each_account_gets_its_own_service_key()
    {
        var rds = _f.Kms.GenerateDataKeyWithoutPlaintext(_f.Me, "alias/acs/rds").KeyId;
        var ecs = _f.Kms.GenerateDataKeyWithoutPlaintext(_f.Me, "alias/acs/ecs").KeyId;
        var otherRds = _f.Kms.GenerateDataKeyWithoutPlaintext(_f.Stranger, "alias/acs/rds").KeyId;

        Assert.Equal(3, new[] { rds, ecs, otherRds }.Distinct().Count());
        Assert.Equal(2, _f.Kms.ListKeys(_f.Me).TotalCount);
    }

    [Fact]
    public void Concurrent_first_use_from_two_KMS_processes_creates_one_key()
    {
        using var other = _f.Open();
        var ids = new string[16];

        Parallel.For(0, ids.Length, i =>
        {
            var kms = i % 2 == 0 ? _f.Kms : other;
            ids[i] = kms.Encrypt(_f.Me, "alias/acs/oss", "x"u8).KeyId;
        });

        Assert.Single(ids.Distinct());
        Assert.Equal(1, _f.Kms.ListKeys(_f.Me).TotalCount);
    }

    [Fact]
    public void Users_cannot_change_a_service_key()
    {
        var id = _f.Kms.GenerateDataKeyWithoutPlaintext(_f.Me, "alias/acs/ecs").KeyId;
        var arn = _f.Kms.DescribeKey(_f.Me, id).Arn;
        var cmk = _f.NewKey();

        KmsFixture.Fails(C.ServiceKeyReadOnly, () => _f.Kms.DisableKey(_f.Me, "alias/acs/ecs"));
        KmsFixture.Fails(C.ServiceKeyReadOnly, () => _f.Kms.EnableKey(_f.Me, id));
        KmsFixture.Fails(C.ServiceKeyReadOnly, () => _f.Kms.ScheduleKeyDeletion(_f.Me, id, 7));
        KmsFixture.Fails(C.ServiceKeyReadOnly, () => _f.Kms.CancelKeyDeletion(_f.Me, id));
        KmsFixture.Fails(C.ServiceKeyReadOnly, () => _f.Kms.UpdateKeyDescription(_f.Me, id, "mine now"));
        KmsFixture.Fails(C.ServiceKeyReadOnly, () => _f.Kms.SetDeletionProtection(_f.Me, arn, true));
        KmsFixture.Fails(C.ServiceKeyReadOnly, () => _f.Kms.TagResource(_f.Me, id, [new("k", "v")]));
        KmsFixture.Fails(C.ServiceKeyReadOnly, () => _f.Kms.UntagResource(_f.Me, id, ["k"]));
        KmsFixture.Fails(C.ServiceKeyReadOnly, () => _f.Kms.CreateAlias(_f.Me, "alias/my-ecs", id));
        KmsFixture.Fails(C.ServiceKeyReadOnly, () => _f.Kms.CreateKeyVersion(_f.Me, id));
        KmsFixture.Fails(C.ServiceKeyReadOnly, () => _f.Kms.UpdateRotationPolicy(_f.Me, id, true, TimeSpan.FromDays(30)));
        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.UpdateAlias(_f.Me, "alias/acs/ecs", cmk));
        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.DeleteAlias(_f.Me, "alias/acs/ecs"));

        var m = _f.Kms.DescribeKey(_f.Me, "alias/acs/ecs");
        Assert.Equal(id, m.KeyId);
        Assert.Equal(KeyStates.Enabled, m.KeyState);
    }

    [Fact]
    public void Only_well_formed_product_codes_make_service_keys()
    {
        KmsFixture.Fails(C.AliasNotFound, () => _f.Kms.GenerateDataKey(_f.Me, "alias/acs/Not_A_Product").Dispose());
    }
}
