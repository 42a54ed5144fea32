using TdeEngine.Disks.Format;
using TdeEngine.Disks.Tests.Infrastructure;
using TdeEngine.Kms.Errors;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Disks.Tests;

/// <summary>The disk and its KMS key: disable, inspect, rotate, re-wrap.</summary>
public sealed class EncryptedDiskKeyTests : IDisposable
{
    private readonly DiskFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Open_with_the_key_disabled_is_Rejected_Disabled_and_works_again_after_EnableKey()
    {
        var keyId = TestKms.NewKey();
        using (var disk = _dir.Create("k.img", keyId: keyId))
        {
            disk.Write(0, "data"u8);
        }

        TestKms.Kms.DisableKey(TestKms.Caller, keyId);
        var e = Assert.Throws<KmsException>(() => EncryptedDisk.Open(_dir.File("k.img"), TestKms.Keys));
        TestKms.Kms.EnableKey(TestKms.Caller, keyId);

        Assert.Equal("Rejected.Disabled", e.Code);
        using var disk2 = EncryptedDisk.Open(_dir.File("k.img"), TestKms.Keys);
        var back = new byte[4];
        disk2.Read(0, back);
        Assert.Equal("data"u8.ToArray(), back);
    }

    [Fact]
    public void A_refused_Open_does_not_keep_the_disk_locked()
    {
        var keyId = TestKms.NewKey();
        using (_dir.Create("k.img", keyId: keyId))
        {
        }

        TestKms.Kms.DisableKey(TestKms.Caller, keyId);
        Assert.Throws<KmsException>(() => EncryptedDisk.Open(_dir.File("k.img"), TestKms.Keys));
        TestKms.Kms.EnableKey(TestKms.Caller, keyId);

        using var disk = EncryptedDisk.Open(_dir.File("k.img"), TestKms.Keys);
        Assert.Equal(TestKms.Arn(keyId), disk.KmsKeyArn);
    }

    [Fact]
    public void Inspect_reads_the_header_without_the_KMS_while_the_key_is_disabled_and_the_disk_is_attached()
    {
        var keyId = TestKms.NewKey();
        using var disk = _dir.Create("i.img", 16 * 512, 512, keyId);
        TestKms.Kms.DisableKey(TestKms.Caller, keyId);
        try
        {
            var info = EncryptedDisk.Inspect(_dir.File("i.img"));

            Assert.Equal(new EncryptedDiskInfo(disk.DiskId, 16 * 512, 512, "XTS-AES-256", TestKms.Arn(keyId), info.Context, 1), info);
            Assert.Equal(DiskFolder.Context("i.img").ToString(), info.Context.ToString());
        }
        finally
        {
            TestKms.Kms.EnableKey(TestKms.Caller, keyId);
        }
    }

    [Fact]
    public void Rewrap_to_another_CMK_changes_only_the_header_and_the_old_key_is_no_longer_needed()
    {
        var oldKey = TestKms.NewKey();
        var newKey = TestKms.NewKey();
        var data = DiskFolder.Pattern(3 * 4096, 7);
        string diskId;
        using (var disk = _dir.Create("r.img", keyId: oldKey))
        {
            disk.Write(1000, data);
            diskId = disk.DiskId;
        }

        var before = _dir.Raw("r.img");

        var info = EncryptedDisk.Rewrap(_dir.File("r.img"), TestKms.Keys, newKey);

        var after = _dir.Raw("r.img");
        Assert.Equal(before.Length, after.Length);
        Assert.True(before.AsSpan(DiskFolder.HeaderRegion).SequenceEqual(after.AsSpan(DiskFolder.HeaderRegion)), "a data sector changed");
        Assert.False(before.AsSpan(0, DiskFolder.HeaderRegion).SequenceEqual(after.AsSpan(0, DiskFolder.HeaderRegion)));
        Assert.Equal(TestKms.Arn(newKey), info.KmsKeyArn);
        Assert.Equal(TestKms.Arn(newKey), EncryptedDisk.Inspect(_dir.File("r.img")).KmsKeyArn);
        Assert.Equal(diskId, info.DiskId);

        TestKms.Kms.DisableKey(TestKms.Caller, oldKey);
        using var reopened = EncryptedDisk.Open(_dir.File("r.img"), TestKms.Keys);
        var back = new byte[data.Length];
        reopened.Read(1000, back);
        Assert.Equal(data, back);
        Assert.Equal(TestKms.Arn(newKey), reopened.KmsKeyArn);
    }

    [Fact]
    public void Rewrap_after_a_key_rotation_wraps_the_DEK_under_the_new_version()
    {
        var keyId = TestKms.NewKey();
        using (var disk = _dir.Create("v.img", keyId: keyId))
        {
            disk.Write(0, "rotated"u8);
        }

        var wrappedBefore = DiskHeader.Read(_dir.Raw("v.img").AsSpan(0, DiskFolder.HeaderRegion), "v.img").WrappedDek;
        var version = TestKms.Kms.CreateKeyVersion(TestKms.Caller, keyId);

        EncryptedDisk.Rewrap(_dir.File("v.img"), TestKms.Keys, keyId);

        var wrappedAfter = DiskHeader.Read(_dir.Raw("v.img").AsSpan(0, DiskFolder.HeaderRegion), "v.img").WrappedDek;
        Assert.NotEqual(wrappedBefore, wrappedAfter);
        Assert.True(DiskFolder.Contains(wrappedAfter, System.Text.Encoding.ASCII.GetBytes(version.KeyVersionId)), "the new blob does not name the new key version");
        using var disk2 = EncryptedDisk.Open(_dir.File("v.img"), TestKms.Keys);
        var back = new byte[7];
        disk2.Read(0, back);
        Assert.Equal("rotated"u8.ToArray(), back);
    }

    [Fact]
    public void Rewrap_refuses_an_attached_disk_with_DiskInUse()
    {
        using var disk = _dir.Create("a.img");
        var before = _dir.Raw("a.img");

        var e = Assert.Throws<TdeStorageException>(() => EncryptedDisk.Rewrap(_dir.File("a.img"), TestKms.Keys, TestKms.NewKey()));

        Assert.Equal(TdeStorageException.Codes.DiskInUse, e.Code);
        Assert.Equal(before, _dir.Raw("a.img"));
    }

    [Fact]
    public void A_crash_in_either_write_of_a_rewrap_leaves_a_valid_header()
    {
        var oldKey = TestKms.NewKey();
        var newKey = TestKms.NewKey();
        using (var disk = _dir.Create("t.img", keyId: oldKey))
        {
            disk.Write(0, "survives"u8);
        }

        // Create writes sequence 0 to slot 0 and 1 to slot 1. A crash during the Rewrap's first
        // write (sequence 2, to slot 0) tears slot 0: the current header in slot 1 still opens.
        var torn = _dir.Raw("t.img");
        _dir.Patch("t.img", 100, DiskFolder.Pattern(200, 8));
        Assert.Equal(TestKms.Arn(oldKey), EncryptedDisk.Inspect(_dir.File("t.img")).KmsKeyArn);
        File.WriteAllBytes(_dir.File("t.img"), torn);

        // A crash during its second write (sequence 3, to slot 1) tears slot 1: slot 0 has the new header.
        EncryptedDisk.Rewrap(_dir.File("t.img"), TestKms.Keys, newKey);
        _dir.Patch("t.img", DiskHeader.SlotSize + 100, DiskFolder.Pattern(200, 8));
        Assert.Equal(TestKms.Arn(newKey), EncryptedDisk.Inspect(_dir.File("t.img")).KmsKeyArn);
        using var reopened = EncryptedDisk.Open(_dir.File("t.img"), TestKms.Keys);
        var back = new byte[8];
        reopened.Read(0, back);
        Assert.Equal("survives"u8.ToArray(), back);
    }

    [Fact]
    public void After_a_rewrap_the_old_wrapping_is_in_neither_header_slot()
    {
        var oldKey = TestKms.NewKey();
        using (_dir.Create("w.img", keyId: oldKey))
        {
        }

        var oldArn = System.Text.Encoding.UTF8.GetBytes(TestKms.Arn(oldKey));
        Assert.True(_dir.Raw("w.img").AsSpan().IndexOf(oldArn) >= 0);

        EncryptedDisk.Rewrap(_dir.File("w.img"), TestKms.Keys, TestKms.NewKey());

        // Both slots were rewritten: the old key's ARN (stored beside its wrapped DEK) is gone.
        Assert.True(_dir.Raw("w.img").AsSpan(0, 2 * DiskHeader.SlotSize).IndexOf(oldArn) < 0);
    }

    [Fact]
    public void Rewrap_to_a_disabled_key_propagates_the_KMS_refusal_and_changes_nothing()
    {
        var target = TestKms.NewKey();
        using (_dir.Create("d.img"))
        {
        }

        var before = _dir.Raw("d.img");
        TestKms.Kms.DisableKey(TestKms.Caller, target);

        var e = Assert.Throws<KmsException>(() => EncryptedDisk.Rewrap(_dir.File("d.img"), TestKms.Keys, target));

        Assert.Equal("Rejected.Disabled", e.Code);
        Assert.Equal(before, _dir.Raw("d.img"));
    }
}
