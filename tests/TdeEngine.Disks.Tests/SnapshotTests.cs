using System.Text;
using TdeEngine.Disks.Tests.Infrastructure;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Disks.Tests;

public sealed class SnapshotTests : IDisposable
{
    private readonly DiskFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void A_snapshot_opens_with_the_data_as_of_the_snapshot_and_later_writes_do_not_change_it()
    {
        var before = DiskFolder.Pattern(2 * 4096 + 17, 1);
        using var disk = _dir.Create("disk.img", 16 * 4096);
        disk.Write(3000, before);

        disk.CreateSnapshot(_dir.File("snap.img"));
        disk.Write(3000, DiskFolder.Pattern(before.Length, 2));
        disk.Write(12 * 4096, DiskFolder.Pattern(4096, 3));

        using var snapshot = EncryptedDisk.Open(_dir.File("snap.img"), TestKms.Keys);
        var all = new byte[snapshot.Size];
        snapshot.Read(0, all);
        Assert.Equal(before, all.AsSpan(3000, before.Length).ToArray());
        Assert.True(all.AsSpan(12 * 4096).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(disk.Size, snapshot.Size);
        Assert.Equal(disk.DiskId, snapshot.DiskId);
        Assert.Equal(disk.KmsKeyArn, snapshot.KmsKeyArn);
        Assert.Equal(disk.Context.ToString(), snapshot.Context.ToString());
    }

    [Fact]
    public void A_snapshot_holds_no_plaintext_and_the_same_ciphertext_as_its_disk()
    {
        var marker = Encoding.ASCII.GetBytes("SNAPSHOT-SECRET-MARKER:");
        var data = new byte[4096];
        for (var i = 0; i + marker.Length <= data.Length; i += marker.Length)
        {
            marker.CopyTo(data, i);
        }

        using var disk = _dir.Create("disk.img", 8 * 4096);
        disk.Write(4096, data);

        disk.CreateSnapshot(_dir.File("snap.img"));

        var snapshot = _dir.Raw("snap.img");
        Assert.False(DiskFolder.Contains(snapshot, marker.AsSpan(0, 16)));
        Assert.Equal(_dir.DataRegion("disk.img"), snapshot[DiskFolder.HeaderRegion..]);
        Assert.Equal(new[] { "disk.img", "snap.img" }, Directory.GetFiles(_dir.Path).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void CreateSnapshot_refuses_an_existing_target_and_leaves_it_alone()
    {
        using var disk = _dir.Create("disk.img");
        File.WriteAllText(_dir.File("snap.img"), "keep me");

        var e = Assert.Throws<TdeStorageException>(() => disk.CreateSnapshot(_dir.File("snap.img")));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, e.Code);
        Assert.Equal("keep me", File.ReadAllText(_dir.File("snap.img")));
        Assert.Equal(2, Directory.GetFiles(_dir.Path).Length);
    }

    [Fact]
    public void MoveNoReplace_moves_into_a_free_name_and_refuses_a_taken_one_leaving_both_files()
    {
        File.WriteAllText(_dir.File("a.tmp"), "new");
        File.WriteAllText(_dir.File("taken.img"), "keep me");

        var e = Assert.Throws<TdeStorageException>(() => TdeEngine.Disks.Files.DiskFile.MoveNoReplace(_dir.File("a.tmp"), _dir.File("taken.img")));
        TdeEngine.Disks.Files.DiskFile.MoveNoReplace(_dir.File("a.tmp"), _dir.File("free.img"));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, e.Code);
        Assert.Equal("keep me", File.ReadAllText(_dir.File("taken.img")));
        Assert.Equal("new", File.ReadAllText(_dir.File("free.img")));
        Assert.False(File.Exists(_dir.File("a.tmp")));
    }

    [Fact]
    public void A_reencrypted_copy_reads_the_same_under_a_new_DEK_and_key_with_every_sector_sealed_anew()
    {
        var oldKey = TestKms.NewKey();
        var newKey = TestKms.NewKey();
        var data = DiskFolder.Pattern((3 * 4096) + 100, 4);
        string sourceId;
        using (var disk = _dir.Create("disk.img", 64 * 4096, keyId: oldKey))
        {
            disk.Write(5000, data);
            disk.Write(40 * 4096, DiskFolder.Pattern(4096, 5));
            sourceId = disk.DiskId;
            var info = disk.CreateReencryptedCopy(_dir.File("copy.img"), TestKms.Keys, newKey, DiskFolder.Context("copy"));

            Assert.NotEqual(sourceId, info.DiskId);
            Assert.Equal(TestKms.Arn(newKey), info.KmsKeyArn);
        }

        var source = _dir.Raw("disk.img");
        var copy = _dir.Raw("copy.img");
        for (var sector = 0; sector < 64; sector++)
        {
            var at = DiskFolder.HeaderRegion + (sector * 4096);
            var written = source.AsSpan(at, 4096).ContainsAnyExcept((byte)0);
            Assert.Equal(written, copy.AsSpan(at, 4096).ContainsAnyExcept((byte)0));   // the same sectors written, the rest holes
            if (written)
            {
                Assert.False(source.AsSpan(at, 4096).SequenceEqual(copy.AsSpan(at, 4096)));   // sealed anew under the new DEK
            }
        }

        TestKms.Kms.DisableKey(TestKms.Caller, oldKey);
        try
        {
            using var reopened = EncryptedDisk.Open(_dir.File("copy.img"), TestKms.Keys);
            var back = new byte[data.Length];
            reopened.Read(5000, back);
            Assert.Equal(data, back);
            Assert.Equal(DiskFolder.Context("copy").ToString(), reopened.Context.ToString());
        }
        finally
        {
            TestKms.Kms.EnableKey(TestKms.Caller, oldKey);
        }
    }

    [Fact]
    public void A_reencrypted_copy_refused_by_the_KMS_or_onto_an_existing_file_leaves_no_new_file()
    {
        var disabled = TestKms.NewKey();
        TestKms.Kms.DisableKey(TestKms.Caller, disabled);
        File.WriteAllText(_dir.File("taken.img"), "keep me");
        using var disk = _dir.Create("disk.img");
        disk.Write(0, "data"u8);

        var refused = Assert.Throws<TdeEngine.Kms.Errors.KmsException>(() => disk.CreateReencryptedCopy(_dir.File("copy.img"), TestKms.Keys, disabled, DiskFolder.Context("c")));
        var taken = Assert.Throws<TdeStorageException>(() => disk.CreateReencryptedCopy(_dir.File("taken.img"), TestKms.Keys, TestKms.NewKey(), DiskFolder.Context("c")));

        Assert.Equal("Rejected.Disabled", refused.Code);
        Assert.Equal(TdeStorageException.Codes.InvalidParameter, taken.Code);
        Assert.Equal("keep me", File.ReadAllText(_dir.File("taken.img")));
        Assert.Equal(["disk.img", "taken.img"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }
}
