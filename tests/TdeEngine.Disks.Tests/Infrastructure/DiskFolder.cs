using TdeEngine.Disks.Files;
using TdeEngine.Kms.Envelope;

namespace TdeEngine.Disks.Tests.Infrastructure;

/// <summary>A temp folder for disk images, deleted after the test, with helpers that look at raw bytes.</summary>
internal sealed class DiskFolder : IDisposable
{
    public const int HeaderRegion = 8192;

    public DiskFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "tde-disk-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public static EncryptionContext Context(string diskName) =>
        EncryptionContext.From([new("acs:ecs:disk", diskName), new("tenant", "t-1")]);

    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>A new disk under <paramref name="keyId"/> (a fresh CMK when null).</summary>
    public EncryptedDisk Create(string name, long size = 64 * 1024, int sectorSize = 4096, string? keyId = null) =>
        EncryptedDisk.Create(File(name), size, TestKms.Keys, keyId ?? TestKms.NewKey(), Context(name), sectorSize);

    /// <summary>The raw bytes of a file, read without a lock (so also while its disk is attached).</summary>
    public byte[] Raw(string name)
    {
        using var handle = DiskFile.OpenForInspect(File(name));
        var bytes = new byte[RandomAccess.GetLength(handle)];
        var total = 0;
        while (total < bytes.Length)
        {
            var n = RandomAccess.Read(handle, bytes.AsSpan(total), total);
            Assert.True(n > 0, "short read");
            total += n;
        }

        return bytes;
    }

    public byte[] DataRegion(string name) => Raw(name)[HeaderRegion..];

    /// <summary>Overwrites bytes of a file in place.</summary>
    public void Patch(string name, long offset, ReadOnlySpan<byte> bytes)
    {
        using var handle = System.IO.File.OpenHandle(File(name), FileMode.Open, FileAccess.Write);
        RandomAccess.Write(handle, bytes, offset);
    }

    public static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    public static bool Contains(ReadOnlySpan<byte> haystack, ReadOnlySpan<byte> needle) => haystack.IndexOf(needle) >= 0;

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
