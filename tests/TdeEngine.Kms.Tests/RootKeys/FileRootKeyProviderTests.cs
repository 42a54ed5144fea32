using System.Security.Cryptography;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Kms.Tests.Infrastructure;

namespace TdeEngine.Kms.Tests.RootKeys;

[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class FileRootKeyProviderTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    private string KeyPath => Path.Combine(_dir.Path, "root.key");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Creates_a_0600_file_of_53_bytes()
    {
        using var root = FileRootKeyProvider.OpenOrCreate(KeyPath);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(KeyPath));
        Assert.Equal(53, new FileInfo(KeyPath).Length);
        Assert.Equal("TDRK"u8.ToArray(), File.ReadAllBytes(KeyPath)[..4]);
    }

    [Fact]
    public void Reopening_gives_the_same_key()
    {
        var material = RandomNumberGenerator.GetBytes(32);
        byte[] wrapped;
        string id;
        using (var root = FileRootKeyProvider.OpenOrCreate(KeyPath))
        {
            wrapped = root.Wrap(material, "ctx"u8);
            id = root.RootKeyId;
        }

        using var again = FileRootKeyProvider.OpenOrCreate(KeyPath);
        using var unwrapped = again.Unwrap(wrapped, "ctx"u8);

        Assert.Equal(id, again.RootKeyId);
        Assert.Equal(material, unwrapped.Span.ToArray());
    }

    [Fact]
    public void Wrapped_bytes_do_not_contain_the_material_and_bind_their_context()
    {
        using var root = FileRootKeyProvider.OpenOrCreate(KeyPath);
        var material = RandomNumberGenerator.GetBytes(32);

        var wrapped = root.Wrap(material, "key-a"u8);

        Assert.Equal(-1, wrapped.AsSpan().IndexOf(material));
        Assert.Throws<CryptographicException>(() => root.Unwrap(wrapped, "key-b"u8));
    }

    [Fact]
    public void Material_wrapped_by_another_root_key_names_both_keys()
    {
        using var first = FileRootKeyProvider.OpenOrCreate(KeyPath);
        using var other = FileRootKeyProvider.OpenOrCreate(Path.Combine(_dir.Path, "other.key"));
        var wrapped = other.Wrap(new byte[32], "x"u8);

        var e = Assert.Throws<CryptographicException>(() => first.Unwrap(wrapped, "x"u8));

        Assert.Contains(other.RootKeyId, e.Message, StringComparison.Ordinal);
        Assert.Contains(first.RootKeyId, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_root_key_readable_by_others_is_refused()
    {
        FileRootKeyProvider.OpenOrCreate(KeyPath).Dispose();
        File.SetUnixFileMode(KeyPath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);

        var e = Assert.Throws<InvalidOperationException>(() => FileRootKeyProvider.OpenOrCreate(KeyPath));

        Assert.Contains("chmod 600", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_damaged_root_key_file_is_refused()
    {
        File.WriteAllBytes(KeyPath, new byte[53]);
        File.SetUnixFileMode(KeyPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);

        Assert.Throws<InvalidDataException>(() => FileRootKeyProvider.OpenOrCreate(KeyPath));
    }

    [Fact]
    public void Racing_creators_agree_on_one_key()
    {
        var ids = new string[8];
        Parallel.For(0, ids.Length, i =>
        {
            using var root = FileRootKeyProvider.OpenOrCreate(KeyPath);
            ids[i] = root.RootKeyId;
        });

        Assert.Single(ids.Distinct());
        Assert.Single(Directory.GetFiles(_dir.Path));
    }
}
