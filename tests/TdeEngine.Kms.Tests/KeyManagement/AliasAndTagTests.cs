using TdeEngine.Kms.Tests.Infrastructure;
using C = TdeEngine.Kms.Errors.KmsErrors.Codes;

namespace TdeEngine.Kms.Tests.KeyManagement;

public sealed class AliasAndTagTests : IDisposable
{
    private readonly KmsFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public void Aliases_are_created_listed_moved_and_deleted()
    {
        var a = _f.NewKey();
        var b = _f.NewKey();

        _f.Kms.CreateAlias(_f.Me, "alias/app/orders", a);
        _f.Kms.CreateAlias(_f.Me, "alias/app/payroll", a);
        var all = _f.Kms.ListAliases(_f.Me);
        Assert.Equal(2, all.TotalCount);
        Assert.Equal(["alias/app/orders", "alias/app/payroll"], all.Items.Select(x => x.AliasName));
        Assert.Equal($"acs:kms:cn-hangzhou:{KmsFixture.Account}:alias/app/orders", all.Items[0].AliasArn);
        Assert.Equal(2, _f.Kms.ListAliasesByKeyId(_f.Me, a).TotalCount);

        _f.Kms.UpdateAlias(_f.Me, "alias/app/orders", b);
        Assert.Equal(b, _f.Kms.DescribeKey(_f.Me, "alias/app/orders").KeyId);
        Assert.Equal(["alias/app/orders"], _f.Kms.ListAliasesByKeyId(_f.Me, b).Items.Select(x => x.AliasName));

        _f.Kms.DeleteAlias(_f.Me, "alias/app/orders");
        KmsFixture.Fails(C.AliasNotFound, () => _f.Kms.DescribeKey(_f.Me, "alias/app/orders"));
        KmsFixture.Fails(C.AliasNotFound, () => _f.Kms.DeleteAlias(_f.Me, "alias/app/orders"));
        KmsFixture.Fails(C.AliasNotFound, () => _f.Kms.UpdateAlias(_f.Me, "alias/app/orders", b));
    }

    [Fact]
    public void An_alias_name_is_unique_per_account_but_not_across_accounts()
    {
        var mine = _f.NewKey();
        var theirs = _f.Kms.CreateKey(_f.Stranger, new()).KeyId;
        _f.Kms.CreateAlias(_f.Me, "alias/shared-name", mine);

        KmsFixture.Fails(C.AliasExists, () => _f.Kms.CreateAlias(_f.Me, "alias/shared-name", mine));
        _f.Kms.CreateAlias(_f.Stranger, "alias/shared-name", theirs);

        Assert.Equal(theirs, _f.Kms.DescribeKey(_f.Stranger, "alias/shared-name").KeyId);
        Assert.Equal(mine, _f.Kms.DescribeKey(_f.Me, "alias/shared-name").KeyId);
    }

    [Theory]
    [InlineData("orders")]
    [InlineData("alias/")]
    [InlineData("alias/has space")]
    [InlineData("alias/ünïcode")]
    [InlineData("alias/a:b")]   // Alibaba: letters, digits, '_', '-' and '/' only
    public void Malformed_alias_names_are_refused(string name)
    {
        var id = _f.NewKey();

        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.CreateAlias(_f.Me, name, id));
    }

    [Fact]
    public void The_acs_prefix_is_reserved_for_service_keys()
    {
        var id = _f.NewKey();

        var e = KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.CreateAlias(_f.Me, "alias/acs/mine", id));
        Assert.Contains("reserved", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Aliases_cannot_point_at_a_key_pending_deletion()
    {
        var doomed = _f.NewKey();
        var live = _f.NewKey();
        _f.Kms.CreateAlias(_f.Me, "alias/x", live);
        _f.Kms.ScheduleKeyDeletion(_f.Me, doomed, 7);

        KmsFixture.Fails(C.StateModifiedFailed, () => _f.Kms.CreateAlias(_f.Me, "alias/y", doomed));
        KmsFixture.Fails(C.PendingDeletion, () => _f.Kms.UpdateAlias(_f.Me, "alias/x", doomed));
    }

    [Fact]
    public void Tags_are_added_overwritten_listed_and_removed()
    {
        var id = _f.NewKey();

        _f.Kms.TagResource(_f.Me, id, [new("env", "dev"), new("team", "db")]);
        _f.Kms.TagResource(_f.Me, id, [new("env", "prod")]);
        var tags = _f.Kms.ListResourceTags(_f.Me, id);
        Assert.Equal([("env", "prod"), ("team", "db")], tags.Select(t => (t.TagKey, t.TagValue)));
        Assert.All(tags, t => Assert.Equal(id, t.KeyId));

        _f.Kms.UntagResource(_f.Me, id, ["env", "never-set"]);
        Assert.Equal(["team"], _f.Kms.ListResourceTags(_f.Me, id).Select(t => t.TagKey));
    }

    [Fact]
    public void Tags_are_validated()
    {
        var id = _f.NewKey();

        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.TagResource(_f.Me, id, [new("acs:owner", "x")]));
        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.TagResource(_f.Me, id, [new("aliyunX", "x")]));
        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.TagResource(_f.Me, id, [new(new string('k', 129), "x")]));
        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.TagResource(_f.Me, id, [new("a", "1"), new("a", "2")]));
        KmsFixture.Fails(C.MissingParameter, () => _f.Kms.TagResource(_f.Me, id, []));
    }

    [Fact]
    public void A_key_holds_at_most_20_tags()
    {
        var id = _f.NewKey();
        _f.Kms.TagResource(_f.Me, id, Enumerable.Range(0, 20).Select(i => new KeyValuePair<string, string>($"k{i}", "v")).ToList());

        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.TagResource(_f.Me, id, [new("one-more", "v")]));

        Assert.Equal(20, _f.Kms.ListResourceTags(_f.Me, id).Count);
    }

    [Fact]
    public void CreateKey_can_tag_the_new_key()
    {
        var m = _f.Kms.CreateKey(_f.Me, new() { Tags = [new("env", "prod")] });

        Assert.Equal([("env", "prod")], _f.Kms.ListResourceTags(_f.Me, m.KeyId).Select(t => (t.TagKey, t.TagValue)));
    }

    // CreateAlias and UpdateAlias resolve the key, then write: the write itself re-checks the key, so
    // a ScheduleKeyDeletion or purge by another process in between cannot leave an alias on it.
    [Fact]
    public void The_alias_write_itself_refuses_a_key_scheduled_for_deletion_or_gone()
    {
        var doomed = _f.NewKey();
        var live = _f.NewKey();
        _f.Kms.CreateAlias(_f.Me, "alias/moving", live);
        _f.Kms.ScheduleKeyDeletion(_f.Me, doomed, 7);
        using var store = new TdeEngine.Kms.Store.SqliteKeyStore(Path.Combine(_f.Home, "kms.db"));
        var region = _f.Kms.RegionId;

        Assert.False(store.InsertAlias(new(KmsFixture.Account, region, "alias/late", doomed)));
        Assert.False(store.InsertAlias(new(KmsFixture.Account, region, "alias/late", "no-such-key")));
        Assert.False(store.UpdateAlias(new(KmsFixture.Account, region, "alias/moving", doomed)));
        Assert.Null(store.UpdateAlias(new(KmsFixture.Account, region, "alias/missing", live)));
        Assert.Equal(C.AliasExists, Assert.Throws<TdeEngine.Kms.Errors.KmsException>(() =>
            store.InsertAlias(new(KmsFixture.Account, region, "alias/moving", live))).Code);
        Assert.Equal(live, _f.Kms.DescribeKey(_f.Me, "alias/moving").KeyId);
    }
}
