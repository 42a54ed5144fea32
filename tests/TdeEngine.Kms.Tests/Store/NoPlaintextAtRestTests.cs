using System.Text;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Tests.Infrastructure;

namespace TdeEngine.Kms.Tests.Store;

public sealed class NoPlaintextAtRestTests : IDisposable
{
    private readonly KmsFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public void No_file_under_the_home_holds_a_data_key_or_key_version_material()
    {
        var keys = new List<string> { _f.NewKey(), _f.NewKey(), _f.Kms.GenerateDataKeyWithoutPlaintext(_f.Me, "alias/acs/rds").KeyId };
        _f.Kms.CreateKeyVersion(_f.Me, keys[0]);
        var secrets = new List<byte[]>();
        foreach (var key in keys)
        {
            for (var i = 0; i < 50; i++)
            {
                using var dataKey = _f.Kms.GenerateDataKey(_f.Me, key, 32, EncryptionContext.Parse("{\"i\":\"" + i + "\"}"));
                secrets.Add(dataKey.Plaintext.Span.ToArray());
            }
        }

        // The key-version material too: unwrapped here (as only the KMS can) and looked for on disk.
        foreach (var key in keys)
        {
            foreach (var version in _f.Kms.ListKeyVersions(_f.Me, key).Items)
            {
                secrets.Add(_f.RawMaterial(key, version.KeyVersionId));
            }
        }

        Assert.Equal(150 + 4, secrets.Count);
        AssertNoFileHolds(secrets);   // while the store is open (WAL present)
        _f.Kms.Dispose();
        SqliteConnection.ClearAllPools();
        AssertNoFileHolds(secrets);   // and after a checkpoint on close
        _f.Restart();
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void The_home_and_every_file_in_it_are_owner_only()
    {
        _f.NewKey();

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_f.Home) & (UnixFileMode)0x1FF);
        foreach (var file in Directory.GetFiles(_f.Home))
        {
            Assert.True((File.GetUnixFileMode(file) & (UnixFileMode)0x3F) == 0, $"{file} is readable by group or others");
        }
    }

    private void AssertNoFileHolds(List<byte[]> secrets)
    {
        var files = Directory.GetFiles(_f.Home, "*", SearchOption.AllDirectories);
        Assert.Contains(files, f => f.EndsWith("kms.db", StringComparison.Ordinal));
        foreach (var file in files)
        {
            var bytes = File.ReadAllBytes(file);
            var text = Encoding.ASCII.GetString(bytes);
            foreach (var secret in secrets)
            {
                Assert.True(bytes.AsSpan().IndexOf(secret) < 0, $"{file} holds a plaintext key");
                Assert.DoesNotContain(Convert.ToBase64String(secret), text, StringComparison.Ordinal);
                Assert.DoesNotContain(Convert.ToHexString(secret), text, StringComparison.OrdinalIgnoreCase);
            }
        }
    }
}
