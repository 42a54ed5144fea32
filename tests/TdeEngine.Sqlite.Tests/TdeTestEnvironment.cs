using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Time.Testing;
using TdeEngine.Kms;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Storage;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace TdeEngine.Sqlite.Tests;

/// <summary>
/// One embedded KMS and one registration of the TDE VFS for the whole test run (the VFS is
/// process-wide), with a fake clock for the DEK cache. Tests run one at a time.
/// </summary>
public static class TdeTestEnvironment
{
    private static readonly Lazy<State> Shared = new(Create);

    public static KeyManagementService Kms => Shared.Value.Kms;

    public static FakeTimeProvider Clock => Shared.Value.Clock;

    public static KmsCallContext Caller => KmsCallContext.ForRoot(Kms.Options.DefaultAccountId);

    public static TdeStorageOptions Options => Shared.Value.Options;

    /// <summary>Makes sure the VFS is registered with the default test options.</summary>
    public static void EnsureRegistered()
    {
        _ = Shared.Value;
        TdeSqlite.Register(Kms, Options);
    }

    private static State Create()
    {
        var home = Path.Combine(Path.GetTempPath(), "tde-sqlite-tests-" + Guid.NewGuid().ToString("N"));
        var kms = KeyManagementService.Open(new KmsOptions { Home = home });
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var options = new TdeStorageOptions { TimeProvider = clock };
        TdeSqlite.Register(kms, options);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            kms.Dispose();
            SqliteConnection.ClearAllPools();
            try
            {
                Directory.Delete(home, recursive: true);
            }
            catch (IOException)
            {
            }
        };
        return new State(kms, clock, options);
    }

    private sealed record State(KeyManagementService Kms, FakeTimeProvider Clock, TdeStorageOptions Options);
}

/// <summary>A temp folder for database files, deleted after the test.</summary>
public sealed class DatabaseFolder : IDisposable
{
    public DatabaseFolder()
    {
        TdeTestEnvironment.EnsureRegistered();
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "tde-db-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public SqliteConnection OpenTde(string name, string? uriQuery = null)
    {
        var connection = new SqliteConnection(uriQuery is null
            ? TdeSqlite.ConnectionString(File(name))
            : $"Data Source=file:{File(name)}?vfs=tde&{uriQuery};Pooling=False");
        connection.Open();
        return connection;
    }

    public SqliteConnection OpenPlain(string name, SqliteOpenMode mode = SqliteOpenMode.ReadWriteCreate)
    {
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = File(name), Mode = mode, Pooling = false }.ToString());
        connection.Open();
        return connection;
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

internal static class SqlExtensions
{
    /// <summary>A recursive CTE yielding 1..<paramref name="n"/>, for INSERT ... SELECT.</summary>
    public static string Rows(int n) => $"(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<{n}) SELECT i FROM c)";

    /// <summary>An SQLite error with the TDE cause behind it, for assertion messages.</summary>
    public static string Fail(SqliteException e) => $"{e.Message}; TDE: {TdeSqlite.LastError?.Code}: {TdeSqlite.LastError?.Message}";

    /// <summary>
    /// A frame of an older WAL generation was put over today's frame of table <c>b</c>: a new reader
    /// must fail authentication (<c>Tde.PageAuthenticationFailed</c>), not serve the old rows.
    /// </summary>
    public static void AssertOlderGenerationFrameRefused(string databasePath)
    {
        using var reader = new SqliteConnection(TdeSqlite.ConnectionString(databasePath));
        reader.Open();
        string? seen = null;
        var e = Record.Exception(() => seen = reader.Scalar<string>("SELECT group_concat(v) FROM b"));
        Assert.True(e is SqliteException, $"an older generation's frame was served as today's: b = '{seen}' ({e?.GetType().Name})");
        Assert.Equal(Storage.Errors.TdeStorageException.Codes.PageAuthenticationFailed, TdeSqlite.LastError?.Code);
    }

    public static int Exec(this SqliteConnection c, string sql)
    {
        using var command = c.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteNonQuery();
    }

    public static T? Scalar<T>(this SqliteConnection c, string sql)
    {
        using var command = c.CreateCommand();
        command.CommandText = sql;
        var value = command.ExecuteScalar();
        return value is null or DBNull ? default : (T)Convert.ChangeType(value, typeof(T), System.Globalization.CultureInfo.InvariantCulture);
    }
}
