using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.Protection;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Kms.Store;

namespace TdeEngine.Kms.Tests.Infrastructure;

/// <summary>A KMS on a real SQLite store in its own temp directory, with a fake clock.</summary>
public sealed class KmsFixture : IDisposable
{
    public const string Account = "1111222233334444";
    public const string OtherAccount = "5555666677778888";

    private readonly TempDirectory _home = new();

    public KmsFixture()
    {
        Time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        Kms = Open();
    }

    public FakeTimeProvider Time { get; }

    public KeyManagementService Kms { get; private set; }

    /// <summary>A home the KMS creates itself (inside the temp directory), as on first use.</summary>
    public string Home => Path.Combine(_home.Path, "home");

    public KmsCallContext Me { get; } = KmsCallContext.ForRoot(Account);

    public KmsCallContext Stranger { get; } = KmsCallContext.ForRoot(OtherAccount);

    /// <summary>Another KMS over the same home, as a second process would have.</summary>
    public KeyManagementService Open() => KeyManagementService.Open(new KmsOptions
    {
        Home = Home,
        DefaultAccountId = Account,
        TimeProvider = Time,
        StoreRefreshInterval = TimeSpan.Zero,
    });

    /// <summary>Closes and reopens the KMS, as a process restart would.</summary>
    public void Restart()
    {
        Kms.Dispose();
        SqliteConnection.ClearAllPools();
        Kms = Open();
    }

    /// <summary>
    /// The raw material of a software key version, unwrapped from the store with the root key as only
    /// the KMS can. Tests use it to look for the material on disk and to open blobs with other tools.
    /// </summary>
    public byte[] RawMaterial(string keyId, string versionId)
    {
        using var root = FileRootKeyProvider.OpenOrCreate(Path.Combine(Home, "root.key"));
        using var store = new SqliteKeyStore(Path.Combine(Home, "kms.db"));
        var version = store.GetVersions(keyId).Single(v => v.KeyVersionId == versionId);
        using var material = root.Unwrap(version.Material, SoftwareKeyProtectionBackend.WrapContext(new KeyVersionRef(keyId, versionId, null)));
        return material.Span.ToArray();
    }

    public string NewKey(string description = "test") => Kms.CreateKey(Me, new CreateKeyRequest { Description = description }).KeyId;

    public void Dispose()
    {
        Kms.Dispose();
        SqliteConnection.ClearAllPools();
        _home.Dispose();
    }

    /// <summary>Asserts that <paramref name="action"/> fails with <paramref name="code"/> and returns the error.</summary>
    public static KmsException Fails(string code, Action action)
    {
        var e = Assert.Throws<KmsException>(action);
        Assert.Equal(code, e.Code);
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
        return e;
    }
}
