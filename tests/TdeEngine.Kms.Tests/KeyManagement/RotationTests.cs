using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.Tests.Infrastructure;
using C = TdeEngine.Kms.Errors.KmsErrors.Codes;

namespace TdeEngine.Kms.Tests.KeyManagement;

public sealed class RotationTests : IDisposable
{
    private readonly KmsFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public void After_CreateKeyVersion_old_blobs_decrypt_and_new_data_keys_use_the_new_version()
    {
        var id = _f.NewKey();
        var v1 = _f.Kms.DescribeKey(_f.Me, id).PrimaryKeyVersion!;
        using var oldKey = _f.Kms.GenerateDataKey(_f.Me, id);

        _f.Time.Advance(TimeSpan.FromMinutes(1));
        var v2 = _f.Kms.CreateKeyVersion(_f.Me, id);

        Assert.NotEqual(v1, v2.KeyVersionId);
        Assert.Equal(v2.KeyVersionId, _f.Kms.DescribeKey(_f.Me, id).PrimaryKeyVersion);
        Assert.Equal(_f.Time.GetUtcNow(), _f.Kms.DescribeKey(_f.Me, id).LastRotationDate);
        using (var opened = _f.Kms.Decrypt(_f.Me, oldKey.CiphertextBlob!))
        {
            Assert.Equal(v1, opened.KeyVersionId);
            Assert.Equal(oldKey.Plaintext.Span.ToArray(), opened.Plaintext.Span.ToArray());
        }

        using var newKey = _f.Kms.GenerateDataKey(_f.Me, id);
        Assert.Equal(v2.KeyVersionId, newKey.KeyVersionId);
        var reEncrypted = _f.Kms.ReEncrypt(_f.Me, oldKey.CiphertextBlob!, id);
        Assert.Equal(v2.KeyVersionId, reEncrypted.KeyVersionId);
    }

    [Fact]
    public void Versions_are_listed_oldest_first_and_described()
    {
        var id = _f.NewKey();
        _f.Time.Advance(TimeSpan.FromSeconds(1));
        var v2 = _f.Kms.CreateKeyVersion(_f.Me, id);
        _f.Time.Advance(TimeSpan.FromSeconds(1));
        var v3 = _f.Kms.CreateKeyVersion(_f.Me, id);

        var versions = _f.Kms.ListKeyVersions(_f.Me, id);

        Assert.Equal(3, versions.TotalCount);
        Assert.Equal([v2.KeyVersionId, v3.KeyVersionId], versions.Items.Skip(1).Select(v => v.KeyVersionId));
        Assert.Equal(v2.CreationDate, _f.Kms.DescribeKeyVersion(_f.Me, id, v2.KeyVersionId).CreationDate);
        KmsFixture.Fails(C.KeyVersionNotFound, () => _f.Kms.DescribeKeyVersion(_f.Me, id, Guid.NewGuid().ToString()));
    }

    [Fact]
    public void A_disabled_key_gets_no_new_version()
    {
        var id = _f.NewKey();
        _f.Kms.DisableKey(_f.Me, id);

        KmsFixture.Fails(C.Disabled, () => _f.Kms.CreateKeyVersion(_f.Me, id));
    }

    [Theory]
    [InlineData(6)]
    [InlineData(366)]
    public void The_rotation_interval_is_7_to_365_days(int days)
    {
        var id = _f.NewKey();

        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.UpdateRotationPolicy(_f.Me, id, true, TimeSpan.FromDays(days)));
        KmsFixture.Fails(C.MissingParameter, () => _f.Kms.UpdateRotationPolicy(_f.Me, id, true, null));
    }

    [Fact]
    public void Automatic_rotation_happens_when_due_and_not_before()
    {
        var id = _f.NewKey();
        var v1 = _f.Kms.DescribeKey(_f.Me, id).PrimaryKeyVersion;
        _f.Kms.UpdateRotationPolicy(_f.Me, id, true, TimeSpan.FromDays(30));
        var m = _f.Kms.DescribeKey(_f.Me, id);
        Assert.Equal("Enabled", m.AutomaticRotation);
        Assert.Equal(TimeSpan.FromDays(30), m.RotationInterval);
        Assert.Equal(m.CreationDate.AddDays(30), m.NextRotationDate);

        _f.Time.Advance(TimeSpan.FromDays(30) - TimeSpan.FromSeconds(1));
        Assert.Empty(_f.Kms.RunHousekeeping().RotatedKeys);
        Assert.Equal(v1, _f.Kms.DescribeKey(_f.Me, id).PrimaryKeyVersion);

        _f.Time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal([id], _f.Kms.RunHousekeeping().RotatedKeys);
        Assert.Empty(_f.Kms.RunHousekeeping().RotatedKeys);

        var rotated = _f.Kms.DescribeKey(_f.Me, id);
        Assert.NotEqual(v1, rotated.PrimaryKeyVersion);
        Assert.Equal(_f.Time.GetUtcNow(), rotated.LastRotationDate);
        Assert.Equal(_f.Time.GetUtcNow().AddDays(30), rotated.NextRotationDate);
        Assert.Equal(2, _f.Kms.ListKeyVersions(_f.Me, id).TotalCount);
    }

    [Fact]
    public void A_disabled_key_is_not_rotated_and_turning_rotation_off_stops_it()
    {
        var disabled = _f.NewKey();
        var off = _f.NewKey();
        _f.Kms.UpdateRotationPolicy(_f.Me, disabled, true, TimeSpan.FromDays(7));
        _f.Kms.UpdateRotationPolicy(_f.Me, off, true, TimeSpan.FromDays(7));
        _f.Kms.DisableKey(_f.Me, disabled);
        _f.Kms.UpdateRotationPolicy(_f.Me, off, false, null);

        _f.Time.Advance(TimeSpan.FromDays(8));

        Assert.Empty(_f.Kms.RunHousekeeping().RotatedKeys);
        Assert.Equal("Disabled", _f.Kms.DescribeKey(_f.Me, off).AutomaticRotation);
    }

    [Fact]
    public void Rotation_runs_once_when_two_KMS_processes_race()
    {
        var id = _f.NewKey();
        _f.Kms.UpdateRotationPolicy(_f.Me, id, true, TimeSpan.FromDays(7));
        _f.Time.Advance(TimeSpan.FromDays(7));
        using var other = _f.Open();

        var results = new HousekeepingResult[2];
        Parallel.Invoke(() => results[0] = _f.Kms.RunHousekeeping(), () => results[1] = other.RunHousekeeping());

        Assert.Equal(1, results.Sum(r => r.RotatedKeys.Count));
        Assert.Equal(2, _f.Kms.ListKeyVersions(_f.Me, id).TotalCount);
    }

    [Fact]
    public void CreateKey_can_turn_on_rotation()
    {
        var m = _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { EnableAutomaticRotation = true, RotationInterval = TimeSpan.FromDays(90) });

        Assert.Equal("Enabled", m.AutomaticRotation);
        Assert.Equal(m.CreationDate.AddDays(90), m.NextRotationDate);
    }
}
