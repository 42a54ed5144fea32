using Microsoft.Data.Sqlite;
using TdeEngine.Gateway;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Storage;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Keys;
using TdeEngine.Storage.Vfs;

namespace TdeEngine.Sqlite;

/// <summary>
/// Transparent encryption for Microsoft.Data.Sqlite (and so Dapper and EF Core): register once,
/// then open databases with <c>Data Source=app.db;Vfs=tde</c>. Everything else stays the same.
/// </summary>
/// <example>
/// <code>
/// TdeSqlite.Register(kms);                                   // once, at start-up
/// using var db = new SqliteConnection("Data Source=app.db;Vfs=tde");
/// db.Open();                                                  // a new file becomes a TDE database
/// </code>
/// URI form, with per-database choices for a new file:
/// <c>Data Source=file:app.db?vfs=tde&amp;kms_key=alias/orders&amp;cipher=aegis-256&amp;page_size=8192</c>.
/// </example>
public static class TdeSqlite
{
    /// <summary>Registers the TDE VFS over an in-process KMS, calling it as the KMS's default account.</summary>
    public static void Register(KeyManagementService kms, TdeStorageOptions? options = null) =>
        Register(new KmsDataKeyProvider(kms), options);

    /// <summary>
    /// Registers the TDE VFS over the gateway: every DEK request is authorized by RAM as
    /// <paramref name="caller"/> (for example an RDS-style service role) and recorded in the audit trail.
    /// </summary>
    public static void Register(KmsGateway gateway, Func<KmsCallContext> caller, TdeStorageOptions? options = null) =>
        Register(new GatewayDataKeyProvider(gateway, caller), options);

    /// <summary>Registers the TDE VFS over any source of DEKs. Calling it again replaces the configuration.</summary>
    public static void Register(IDataKeyProvider provider, TdeStorageOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(provider);
        TdeVfs.Register(options ?? new TdeStorageOptions(), provider);
    }

    /// <summary>A connection string for a TDE database at <paramref name="path"/>.</summary>
    public static string ConnectionString(string path, SqliteOpenMode mode = SqliteOpenMode.ReadWriteCreate, string vfs = "tde") =>
        new SqliteConnectionStringBuilder { DataSource = path, Mode = mode, Vfs = vfs, Pooling = false }.ToString();

    /// <summary>
    /// The same, with a <c>file:</c> URI as the data source: SQLite then takes URIs in that
    /// connection's <c>ATTACH</c> and <c>VACUUM INTO</c> too, such as
    /// <c>VACUUM INTO 'file:copy.db?cipher=aegis-256&amp;kms_key=alias/backups'</c> (with a plain
    /// path, SQLite would create a file of that name).
    /// </summary>
    public static string UriConnectionString(string path, SqliteOpenMode mode = SqliteOpenMode.ReadWriteCreate, string vfs = "tde")
    {
        var uriMode = mode switch
        {
            SqliteOpenMode.ReadOnly => "ro",
            SqliteOpenMode.ReadWrite => "rw",
            SqliteOpenMode.ReadWriteCreate => "rwc",
            _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "A TDE database is a file: ReadOnly, ReadWrite or ReadWriteCreate."),
        };
        return new SqliteConnectionStringBuilder { DataSource = $"file:{EscapeForUri(Path.GetFullPath(path))}?vfs={vfs}&mode={uriMode}", Pooling = false }.ToString();
    }

    // In a file: URI, '%', '?' and '#' must be escaped; the rest of a path is taken as it is.
    internal static string EscapeForUri(string path) => path.Replace("%", "%25", StringComparison.Ordinal)
        .Replace("?", "%3f", StringComparison.Ordinal).Replace("#", "%23", StringComparison.Ordinal);

    /// <summary>
    /// The storage failure behind the last <see cref="SqliteException"/> on this thread: which file,
    /// which page, which KMS error. SQLite itself can only say "disk I/O error" or "authorization denied".
    /// </summary>
    public static TdeStorageException? LastError => TdeVfs.LastError;

    /// <summary>Raised for every storage failure (tampered page, KMS refusal, ...), for logging.</summary>
    public static event Action<TdeStorageException>? Failure
    {
        add => TdeVfs.Failure += value;
        remove => TdeVfs.Failure -= value;
    }

    /// <summary>
    /// Runs <paramref name="action"/> and, if SQLite fails because of the storage engine, rethrows the
    /// <see cref="TdeStorageException"/> that explains it (with the <see cref="SqliteException"/> inside).
    /// </summary>
    public static T Explain<T>(Func<T> action)
    {
        ArgumentNullException.ThrowIfNull(action);
        TdeVfs.ClearLastError();
        try
        {
            return action();
        }
        catch (SqliteException e) when (TdeVfs.LastError is { } cause)
        {
            throw new TdeStorageException(cause.Code, cause.Message, cause.File, cause.PageNumber, e);
        }
    }
}
