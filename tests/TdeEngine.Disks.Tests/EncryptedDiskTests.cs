using System.Text;
using System.Text.RegularExpressions;
using TdeEngine.Disks.Format;
using TdeEngine.Disks.Tests.Infrastructure;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Disks.Tests;

public sealed partial class EncryptedDiskTests : IDisposable
{
    private readonly DiskFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(512)]
    [InlineData(4096)]
    public void Write_and_Read_round_trip_at_unaligned_offsets_across_sectors_and_persist(int sectorSize)
    {
        var size = 16L * sectorSize;
        var model = new byte[size];
        using (var disk = _dir.Create("d.img", size, sectorSize))
        {
            foreach (var (offset, length, seed) in new[] { (sectorSize - 3L, (2 * sectorSize) + 7, 1), (1L, 5, 2), (5L * sectorSize, sectorSize, 3), (size - 9, 9, 4), (7L * sectorSize + 100, 3 * sectorSize, 5) })
            {
                var data = DiskFolder.Pattern(length, seed);
                disk.Write(offset, data);
                data.CopyTo(model, offset);
            }

            var back = new byte[size];
            disk.Read(0, back);
            Assert.Equal(model, back);
            var middle = new byte[sectorSize + 11];
            disk.Read(sectorSize - 5, middle);
            Assert.Equal(model.AsSpan(sectorSize - 5, sectorSize + 11).ToArray(), middle);
        }

        using var reopened = EncryptedDisk.Open(_dir.File("d.img"), TestKms.Keys);
        var persisted = new byte[size];
        reopened.Read(0, persisted);
        Assert.Equal(model, persisted);
    }

    [Fact]
    public void A_large_write_spanning_many_chunks_round_trips()
    {
        var size = 2L * 1024 * 1024;
        var data = DiskFolder.Pattern(600 * 1024 + 123, 9);
        using var disk = _dir.Create("big.img", size);

        disk.Write(4000, data);
        var back = new byte[data.Length];
        disk.Read(4000, back);

        Assert.Equal(data, back);
    }

    [Fact]
    public void Create_reports_the_disk_properties_and_the_image_has_the_header_then_the_sectors()
    {
        var keyId = TestKms.NewKey();

        using var disk = _dir.Create("p.img", 32 * 512, 512, keyId);

        Assert.Matches(DiskIdPattern(), disk.DiskId);
        Assert.Equal(32 * 512, disk.Size);
        Assert.Equal(512, disk.SectorSize);
        Assert.Equal(TestKms.Arn(keyId), disk.KmsKeyArn);
        Assert.Equal(DiskFolder.Context("p.img").ToString(), disk.Context.ToString());
        Assert.Equal(_dir.File("p.img"), disk.Path);
        Assert.Equal(8192 + (32 * 512), new FileInfo(_dir.File("p.img")).Length);
    }

    [Fact]
    public void The_image_holds_no_plaintext_nor_the_DEK_but_the_wrapped_DEK_in_its_header()
    {
        var marker = Encoding.ASCII.GetBytes("CONFIDENTIAL-CUSTOMER-RECORD-0042;");
        var data = new byte[3 * 4096];
        for (var i = 0; i + marker.Length <= data.Length; i += marker.Length)
        {
            marker.CopyTo(data, i);
        }

        using (var disk = _dir.Create("s.img"))
        {
            disk.Write(4096 + 10, data);
            disk.Flush();
        }

        var raw = _dir.Raw("s.img");
        Assert.False(DiskFolder.Contains(raw, marker.AsSpan(0, 16)), "plaintext found in the image");
        var header = DiskHeader.Read(raw.AsSpan(0, DiskFolder.HeaderRegion), "s.img");
        Assert.True(DiskFolder.Contains(raw.AsSpan(0, DiskFolder.HeaderRegion), header.WrappedDek));
        using var dek = TestKms.Keys.Decrypt(header.WrappedDek, header.Context);
        Assert.Equal(32, dek.Length);
        Assert.False(DiskFolder.Contains(raw, dek.Span), "the plaintext DEK is in the image");
    }

    [Fact]
    public void Identical_plaintext_in_two_sectors_is_different_ciphertext_on_disk()
    {
        var sector = DiskFolder.Pattern(4096, 3);
        using (var disk = _dir.Create("i.img"))
        {
            disk.Write(0, sector);
            disk.Write(4096, sector);
        }

        var data = _dir.DataRegion("i.img");
        Assert.False(data.AsSpan(0, 4096).SequenceEqual(data.AsSpan(4096, 4096)));
        Assert.False(data.AsSpan(0, 4096).SequenceEqual(sector));
    }

    [Fact]
    public void Never_written_sectors_read_as_zeros_and_stay_zero_on_disk()
    {
        using var disk = _dir.Create("z.img", 8 * 4096);
        disk.Write(2 * 4096, DiskFolder.Pattern(4096, 4));
        disk.Flush();

        var all = new byte[disk.Size];
        disk.Read(0, all);

        Assert.True(all.AsSpan(0, 2 * 4096).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(all.AsSpan(3 * 4096).IndexOfAnyExcept((byte)0) < 0);
        var raw = _dir.DataRegion("z.img");
        Assert.True(raw.AsSpan(0, 2 * 4096).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(raw.AsSpan(2 * 4096, 4096).IndexOfAnyExcept((byte)0) >= 0);
    }

    [Fact]
    public void A_sector_written_with_zeros_is_encrypted_like_any_other()
    {
        using (var disk = _dir.Create("w.img", 4 * 4096))
        {
            disk.Write(4096, new byte[4096]);
            var back = new byte[4096];
            disk.Read(4096, back);
            Assert.True(back.AsSpan().IndexOfAnyExcept((byte)0) < 0);
        }

        var raw = _dir.DataRegion("w.img");
        Assert.True(raw.AsSpan(4096, 4096).IndexOfAnyExcept((byte)0) >= 0, "a written zero sector is all zero on disk");
    }

    [Theory]
    [InlineData(-1L, 1)]
    [InlineData(0L, 65537)]
    [InlineData(65536L, 1)]
    [InlineData(65530L, 7)]
    [InlineData(70000L, 0)]
    public void Read_and_Write_outside_the_disk_are_InvalidParameter_and_write_nothing(long offset, int length)
    {
        using var disk = _dir.Create("r.img", 65536);
        var before = _dir.Raw("r.img");

        var read = Assert.Throws<TdeStorageException>(() => disk.Read(offset, new byte[length]));
        var write = Assert.Throws<TdeStorageException>(() => disk.Write(offset, DiskFolder.Pattern(length, 1)));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, read.Code);
        Assert.Equal(TdeStorageException.Codes.InvalidParameter, write.Code);
        Assert.Equal(before, _dir.Raw("r.img"));
    }

    [Fact]
    public void Create_refuses_an_existing_file_and_leaves_it_alone()
    {
        File.WriteAllText(_dir.File("taken.img"), "precious");

        var e = Assert.Throws<TdeStorageException>(() => _dir.Create("taken.img"));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, e.Code);
        Assert.Contains("exists", e.Message, StringComparison.Ordinal);
        Assert.Equal("precious", File.ReadAllText(_dir.File("taken.img")));
    }

    [Theory]
    [InlineData(0L, 4096)]
    [InlineData(-4096L, 4096)]
    [InlineData(4095L, 4096)]
    [InlineData(8193L, 4096)]
    [InlineData(700L, 512)]
    [InlineData(8192L, 1024)]
    [InlineData(8192L, 0)]
    public void Create_refuses_a_bad_size_or_sector_size_and_creates_no_file(long size, int sectorSize)
    {
        var e = Assert.Throws<TdeStorageException>(() => _dir.Create("bad.img", size, sectorSize));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, e.Code);
        Assert.False(File.Exists(_dir.File("bad.img")));
    }

    [Fact]
    public void A_second_Open_is_DiskInUse_until_the_first_is_disposed()
    {
        var path = _dir.File("lock.img");
        var first = _dir.Create("lock.img");

        var e = Assert.Throws<TdeStorageException>(() => EncryptedDisk.Open(path, TestKms.Keys));
        Assert.Equal(TdeStorageException.Codes.DiskInUse, e.Code);
        first.Dispose();

        using var second = EncryptedDisk.Open(path, TestKms.Keys);
        Assert.Equal(first.DiskId, second.DiskId);
        Assert.Equal(TdeStorageException.Codes.DiskInUse,
            Assert.Throws<TdeStorageException>(() => EncryptedDisk.Open(path, TestKms.Keys)).Code);
    }

    [Fact]
    public void Another_process_cannot_lock_an_attached_image_until_it_is_disposed()
    {
        const string script = """
            import fcntl, sys
            with open(sys.argv[1], "rb") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    print("acquired")
                except BlockingIOError:
                    print("busy")
            """;
        var disk = _dir.Create("xp.img");

        var whileAttached = Python.Run(script, "", _dir.File("xp.img")).Trim();
        disk.Dispose();
        var afterDispose = Python.Run(script, "", _dir.File("xp.img")).Trim();

        Assert.Equal("busy", whileAttached);
        Assert.Equal("acquired", afterDispose);
    }

    [Fact]
    public void Concurrent_writers_on_one_disk_each_keep_their_own_bytes()
    {
        const int writers = 4;
        const int region = 3 * 4096;
        using var disk = _dir.Create("c.img", writers * region);
        var expected = new byte[writers][];

        Parallel.For(0, writers, w =>
        {
            for (var round = 0; round < 20; round++)
            {
                var data = DiskFolder.Pattern(region - 2, (w * 100) + round);
                disk.Write((w * region) + 1, data);
                expected[w] = data;
            }
        });

        for (var w = 0; w < writers; w++)
        {
            var back = new byte[region - 2];
            disk.Read((w * region) + 1, back);
            Assert.Equal(expected[w], back);
        }
    }

    [Fact]
    public void A_disposed_disk_refuses_IO_and_Dispose_is_idempotent()
    {
        var disk = _dir.Create("x.img");
        disk.Dispose();
        disk.Dispose();

        Assert.Throws<ObjectDisposedException>(() => disk.Read(0, new byte[1]));
        Assert.Throws<ObjectDisposedException>(() => disk.Write(0, new byte[1]));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    [InlineData(16384)]
    public void Open_of_a_file_that_is_not_a_disk_image_is_NotTdeDisk(int length)
    {
        File.WriteAllBytes(_dir.File("random.bin"), DiskFolder.Pattern(length, 5));

        var e = Assert.Throws<TdeStorageException>(() => EncryptedDisk.Open(_dir.File("random.bin"), TestKms.Keys));
        var inspect = Assert.Throws<TdeStorageException>(() => EncryptedDisk.Inspect(_dir.File("random.bin")));

        Assert.Equal(TdeStorageException.Codes.NotTdeDisk, e.Code);
        Assert.Equal(TdeStorageException.Codes.NotTdeDisk, inspect.Code);
    }

    [Fact]
    public void A_preallocated_disk_has_no_all_zero_sector_and_a_zeroed_sector_reads_as_noise_not_zeros()
    {
        using (var disk = EncryptedDisk.Create(_dir.File("p.img"), 16 * 4096, TestKms.Keys, TestKms.NewKey(), DiskFolder.Context("p"), preallocate: true))
        {
            Assert.True(EncryptedDisk.Inspect(_dir.File("p.img")).Preallocated);
            var never = new byte[4096];
            disk.Read(5 * 4096, never);
            Assert.True(never.AsSpan().IndexOfAnyExcept((byte)0) < 0);   // never written by the app: zeros, sealed at creation
            disk.Write(3 * 4096, DiskFolder.Pattern(4096, 9));
        }

        var raw = _dir.Raw("p.img");
        for (var sector = 0; sector < 16; sector++)
        {
            Assert.True(raw.AsSpan(DiskFolder.HeaderRegion + (sector * 4096), 4096).ContainsAnyExcept((byte)0), $"sector {sector} is all zeros on disk");
        }

        // An attacker zeroes the ciphertext of the written sector: it no longer reads as zeros (a chosen plaintext), but as noise.
        _dir.Patch("p.img", DiskFolder.HeaderRegion + (3 * 4096), new byte[4096]);
        using var reopened = EncryptedDisk.Open(_dir.File("p.img"), TestKms.Keys);
        var back = new byte[4096];
        reopened.Read(3 * 4096, back);
        Assert.True(back.AsSpan().ContainsAnyExcept((byte)0));
        Assert.False(back.AsSpan().SequenceEqual(DiskFolder.Pattern(4096, 9)));
    }

    [Fact]
    public void Snapshots_and_reencrypted_copies_of_a_preallocated_disk_stay_preallocated()
    {
        using var disk = EncryptedDisk.Create(_dir.File("p.img"), 8 * 4096, TestKms.Keys, TestKms.NewKey(), DiskFolder.Context("p"), preallocate: true);
        disk.Write(100, "kept"u8);
        disk.CreateSnapshot(_dir.File("p.snap"));
        var copy = disk.CreateReencryptedCopy(_dir.File("p.copy"), TestKms.Keys, TestKms.NewKey(), DiskFolder.Context("p"));

        Assert.True(EncryptedDisk.Inspect(_dir.File("p.snap")).Preallocated);
        Assert.True(copy.Preallocated);
        Assert.False(EncryptedDisk.Inspect(_dir.File("p.copy")).KmsKeyArn == disk.KmsKeyArn);
        using var reopened = EncryptedDisk.Open(_dir.File("p.copy"), TestKms.Keys);
        var back = new byte[4];
        reopened.Read(100, back);
        Assert.Equal("kept"u8.ToArray(), back);
    }

    [Fact]
    public void A_missing_image_is_DiskNotFound_and_a_folder_is_NotTdeDisk_for_Open_Inspect_and_Rewrap()
    {
        Directory.CreateDirectory(_dir.File("folder.img"));
        foreach (var (path, code) in new[] { (_dir.File("absent.img"), TdeStorageException.Codes.DiskNotFound), (_dir.File("folder.img"), TdeStorageException.Codes.NotTdeDisk) })
        {
            Assert.Equal(code, Assert.Throws<TdeStorageException>(() => EncryptedDisk.Open(path, TestKms.Keys)).Code);
            Assert.Equal(code, Assert.Throws<TdeStorageException>(() => EncryptedDisk.Inspect(path)).Code);
            Assert.Equal(code, Assert.Throws<TdeStorageException>(() => EncryptedDisk.Rewrap(path, TestKms.Keys, TestKms.NewKey())).Code);
        }
    }

    [Fact]
    public async Task A_named_pipe_is_NotTdeDisk_without_waiting_for_a_writer()
    {
        var fifo = _dir.File("pipe.img");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", fifo))
        {
            await mkfifo.WaitForExitAsync();
            Assert.Equal(0, mkfifo.ExitCode);
        }

        var inspect = await Task.Run(() => Assert.Throws<TdeStorageException>(() => EncryptedDisk.Inspect(fifo))).WaitAsync(TimeSpan.FromSeconds(20));
        var open = await Task.Run(() => Assert.Throws<TdeStorageException>(() => EncryptedDisk.Open(fifo, TestKms.Keys))).WaitAsync(TimeSpan.FromSeconds(20));

        Assert.Equal(TdeStorageException.Codes.NotTdeDisk, inspect.Code);
        Assert.Equal(TdeStorageException.Codes.NotTdeDisk, open.Code);
    }

    [Fact]
    public void Create_in_a_missing_folder_or_too_large_for_the_file_system_is_InvalidParameter_and_leaves_no_file()
    {
        var inMissing = Assert.Throws<TdeStorageException>(() => EncryptedDisk.Create(_dir.File("no/such/folder.img"), 4096, TestKms.Keys, TestKms.NewKey(), DiskFolder.Context("m")));
        var huge = Assert.Throws<TdeStorageException>(() => EncryptedDisk.Create(_dir.File("huge.img"), 1L << 60, TestKms.Keys, TestKms.NewKey(), DiskFolder.Context("h")));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, inMissing.Code);
        Assert.Equal(TdeStorageException.Codes.InvalidParameter, huge.Code);
        Assert.False(File.Exists(_dir.File("huge.img")));
    }

    [Fact]
    public void A_truncated_image_is_EnvelopeDamaged()
    {
        using (_dir.Create("t.img", 8 * 4096))
        {
        }

        using (var stream = new FileStream(_dir.File("t.img"), FileMode.Open))
        {
            stream.SetLength(8192 + (4 * 4096));
        }

        var e = Assert.Throws<TdeStorageException>(() => EncryptedDisk.Open(_dir.File("t.img"), TestKms.Keys));
        Assert.Equal(TdeStorageException.Codes.EnvelopeDamaged, e.Code);
    }

    [Fact]
    public void The_ECS_service_key_is_the_default_style_key_and_is_created_on_first_use()
    {
        string arn;
        using (var disk = EncryptedDisk.Create(_dir.File("ecs.img"), 4 * 4096, TestKms.Keys, "alias/acs/ecs", DiskFolder.Context("ecs.img")))
        {
            arn = disk.KmsKeyArn;
            disk.Write(10, "hello"u8);
        }

        using var reopened = EncryptedDisk.Open(_dir.File("ecs.img"), TestKms.Keys);
        var back = new byte[5];
        reopened.Read(10, back);
        Assert.StartsWith("acs:kms:", arn, StringComparison.Ordinal);
        Assert.Equal(arn, EncryptedDisk.Inspect(_dir.File("ecs.img")).KmsKeyArn);
        Assert.Equal("hello"u8.ToArray(), back);
    }

    [GeneratedRegex("^d-[0-9a-f]{20}$")]
    private static partial Regex DiskIdPattern();
}
