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
}
