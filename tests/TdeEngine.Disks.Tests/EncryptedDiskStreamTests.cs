using TdeEngine.Disks.Tests.Infrastructure;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Disks.Tests;

public sealed class EncryptedDiskStreamTests : IDisposable
{
    private readonly DiskFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(512)]
    [InlineData(4096)]
    public void The_stream_seeks_reads_and_writes_at_unaligned_offsets_with_a_fixed_length(int sectorSize)
    {
        var size = 12L * sectorSize;
        var first = DiskFolder.Pattern((2 * sectorSize) + 3, 1);
        var second = DiskFolder.Pattern(77, 2);
        using var disk = _dir.Create("s.img", size, sectorSize);
        using (var stream = disk.AsStream())
        {
            Assert.True(stream.CanRead && stream.CanWrite && stream.CanSeek);
            Assert.Equal(size, stream.Length);

            stream.Seek(sectorSize - 1, SeekOrigin.Begin);
            stream.Write(first);
            Assert.Equal(sectorSize - 1 + first.Length, stream.Position);
            stream.Seek(-100, SeekOrigin.End);
            stream.Write(second);
            stream.Seek(-(first.Length + second.Length), SeekOrigin.Current);
            Assert.Equal(size - 100 - first.Length, stream.Position);

            stream.Position = sectorSize - 1;
            var back = new byte[first.Length];
            stream.ReadExactly(back);
            Assert.Equal(first, back);
            stream.Position = size - 100;
            var tail = new byte[200];
            Assert.Equal(100, stream.Read(tail, 0, 200));
            Assert.Equal(second, tail.AsSpan(0, 77).ToArray());
            Assert.Equal(0, stream.Read(tail, 0, 200));
            stream.Flush();
        }

        var direct = new byte[first.Length];
        disk.Read(sectorSize - 1, direct);
        Assert.Equal(first, direct);
    }

    [Fact]
    public void Writing_past_the_end_throws_and_writes_nothing()
    {
        using var disk = _dir.Create("e.img", 4 * 4096);
        using var stream = disk.AsStream();
        var before = _dir.Raw("e.img");

        stream.Position = (4 * 4096) - 10;
        var e = Assert.Throws<TdeStorageException>(() => stream.Write(new byte[11]));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, e.Code);
        Assert.Equal((4 * 4096) - 10, stream.Position);
        Assert.Equal(before, _dir.Raw("e.img"));
        Assert.Throws<NotSupportedException>(() => stream.SetLength(1));
        Assert.Throws<IOException>(() => stream.Seek(-1, SeekOrigin.Begin));
    }

    [Fact]
    public void The_stream_does_not_own_the_disk()
    {
        var disk = _dir.Create("o.img");
        var stream = disk.AsStream();
        stream.Dispose();

        disk.Write(0, "still attached"u8);
        var other = disk.AsStream();
        Assert.True(other.CanRead);
        disk.Dispose();

        // A disposed stream, or one over a detached disk, says so and refuses every call.
        Assert.False(stream.CanRead || stream.CanWrite || stream.CanSeek);
        Assert.Throws<ObjectDisposedException>(() => stream.ReadByte());
        Assert.False(other.CanRead || other.CanWrite || other.CanSeek);
        Assert.Throws<ObjectDisposedException>(() => other.ReadByte());
    }
}
