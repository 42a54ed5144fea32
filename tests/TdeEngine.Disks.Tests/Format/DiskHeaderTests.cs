using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using TdeEngine.Disks.Tests.Infrastructure;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Disks.Tests.Format;

/// <summary>Pins the header layout drawn in docs/disks.md and its two-slot recovery.</summary>
public sealed class DiskHeaderTests : IDisposable
{
    private readonly DiskFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Both_slots_follow_the_documented_byte_layout()
    {
        var keyId = TestKms.NewKey();
        byte[] diskIdPrefix;
        using (var disk = _dir.Create("h.img", 64 * 512, 512, keyId))
        {
            diskIdPrefix = Convert.FromHexString(disk.DiskId[2..]);
        }

        var raw = _dir.Raw("h.img");
        for (var slotIndex = 0; slotIndex < 2; slotIndex++)
        {
            var slot = raw.AsSpan(slotIndex * 4096, 4096);
            Assert.Equal("TDEDISK\0"u8.ToArray(), slot[..8].ToArray());
            Assert.Equal(1, BinaryPrimitives.ReadUInt16BigEndian(slot[8..]));    // format version
            Assert.Equal(1, BinaryPrimitives.ReadUInt16BigEndian(slot[10..]));   // XTS-AES-256, HKDF key
            Assert.Equal(512u, BinaryPrimitives.ReadUInt32BigEndian(slot[12..]));
            Assert.Equal(64UL * 512, BinaryPrimitives.ReadUInt64BigEndian(slot[16..]));
            Assert.Equal(diskIdPrefix, slot[24..34].ToArray());
            Assert.Equal((ulong)slotIndex, BinaryPrimitives.ReadUInt64BigEndian(slot[40..]));   // Create: 0 at slot 0, 1 at slot 1

            var at = 48;
            var arn = ReadField(slot, ref at);
            var context = ReadField(slot, ref at);
            var wrapped = ReadField(slot, ref at);
            Assert.Equal(TestKms.Arn(keyId), Encoding.UTF8.GetString(arn));
            Assert.Equal(DiskFolder.Context("h.img").CanonicalBytes.ToArray(), context);
            Assert.Equal("TKMS"u8.ToArray(), wrapped[..4]);
            Assert.Equal(SHA256.HashData(slot[..at]), slot.Slice(at, 32).ToArray());
            Assert.True(slot[(at + 32)..].IndexOfAnyExcept((byte)0) < 0);
        }

        Assert.Equal(raw.AsSpan(24, 16).ToArray(), raw.AsSpan(4096 + 24, 16).ToArray());
    }

    [Theory]
    [InlineData(0)]      // the older slot
    [InlineData(4096)]   // the newer slot
    public void One_damaged_slot_still_opens_from_the_other(int slotOffset)
    {
        using (var disk = _dir.Create("one.img"))
        {
            disk.Write(0, "intact"u8);
        }

        _dir.Patch("one.img", slotOffset + 60, DiskFolder.Pattern(40, 3));

        using var reopened = EncryptedDisk.Open(_dir.File("one.img"), TestKms.Keys);
        var back = new byte[6];
        reopened.Read(0, back);
        Assert.Equal("intact"u8.ToArray(), back);
    }

    [Fact]
    public void Both_slots_damaged_is_EnvelopeDamaged()
    {
        using (_dir.Create("both.img"))
        {
        }

        _dir.Patch("both.img", 60, DiskFolder.Pattern(40, 4));
        _dir.Patch("both.img", 4096 + 60, DiskFolder.Pattern(40, 5));

        var open = Assert.Throws<TdeStorageException>(() => EncryptedDisk.Open(_dir.File("both.img"), TestKms.Keys));
        var inspect = Assert.Throws<TdeStorageException>(() => EncryptedDisk.Inspect(_dir.File("both.img")));

        Assert.Equal(TdeStorageException.Codes.EnvelopeDamaged, open.Code);
        Assert.Equal(TdeStorageException.Codes.EnvelopeDamaged, inspect.Code);
    }

    [Fact]
    public void A_context_too_long_for_a_header_slot_is_refused_before_a_file_exists()
    {
        var context = TdeEngine.Kms.Envelope.EncryptionContext.From([new("big", new string('x', 5000))]);

        var e = Assert.Throws<TdeStorageException>(() =>
            EncryptedDisk.Create(_dir.File("long.img"), 4096, TestKms.Keys, TestKms.NewKey(), context));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, e.Code);
        Assert.False(File.Exists(_dir.File("long.img")));
    }

    private static byte[] ReadField(ReadOnlySpan<byte> slot, ref int at)
    {
        int length = BinaryPrimitives.ReadUInt16BigEndian(slot[at..]);
        var value = slot.Slice(at + 2, length).ToArray();
        at += 2 + length;
        return value;
    }
}
