using Dapper;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms.Errors;

namespace TdeEngine.Ram.Identity;

/// <summary>
/// Users, roles, access keys (secrets wrapped by the root key), policies and attachments, in
/// <c>$TDE_HOME/ram.db</c> (SQLite, WAL, safe across processes).
/// </summary>
internal sealed class RamStore
{
    private readonly string _connectionString;

    public RamStore(string path)
    {
        SQLitePCL.Batteries_V2.Init();
        _connectionString = new SqliteConnectionStringBuilder { DataSource = path, Pooling = true, DefaultTimeout = 30 }.ToString();
        using var c = Open();
        c.Execute("PRAGMA journal_mode=WAL;");
        c.Execute("""
            CREATE TABLE IF NOT EXISTS Users (UserId TEXT PRIMARY KEY, AccountId TEXT NOT NULL, UserName TEXT NOT NULL,
                DisplayName TEXT NOT NULL, CreateDate INTEGER NOT NULL, UNIQUE (AccountId, UserName));
            CREATE TABLE IF NOT EXISTS Roles (RoleId TEXT PRIMARY KEY, AccountId TEXT NOT NULL, RoleName TEXT NOT NULL, Description TEXT NOT NULL,
                AssumeRolePolicyDocument TEXT NOT NULL, CreateDate INTEGER NOT NULL, UNIQUE (AccountId, RoleName));
            CREATE TABLE IF NOT EXISTS AccessKeys (AccessKeyId TEXT PRIMARY KEY, AccountId TEXT NOT NULL, UserName TEXT,
                Status TEXT NOT NULL, CreateDate INTEGER NOT NULL, WrappedSecret BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS Policies (AccountId TEXT NOT NULL, PolicyName TEXT NOT NULL, Description TEXT NOT NULL,
                PolicyDocument TEXT NOT NULL, CreateDate INTEGER NOT NULL, PRIMARY KEY (AccountId, PolicyName));
            CREATE TABLE IF NOT EXISTS Attachments (AccountId TEXT NOT NULL, PrincipalType TEXT NOT NULL, PrincipalName TEXT NOT NULL,
                PolicyType TEXT NOT NULL, PolicyName TEXT NOT NULL, PRIMARY KEY (AccountId, PrincipalType, PrincipalName, PolicyType, PolicyName));
            CREATE TABLE IF NOT EXISTS TemporaryKeys (AccessKeyId TEXT PRIMARY KEY, AccountId TEXT NOT NULL, RoleId TEXT NOT NULL, RoleName TEXT NOT NULL,
                SessionName TEXT NOT NULL, WrappedSecret BLOB NOT NULL, TokenHash BLOB NOT NULL, Expiration INTEGER NOT NULL,
                SessionPolicy TEXT);
            """);
        // User and role names are unique without regard to case (as on Alibaba Cloud; role ARNs are
        // lower case). Stores made before this gain the indexes; one that already holds two names
        // differing only in case cannot, and RamService checks before each insert instead.
        foreach (var (table, column) in new[] { ("Users", "UserName"), ("Roles", "RoleName") })
        {
            try
            {
                c.Execute($"CREATE UNIQUE INDEX IF NOT EXISTS {table}NameNoCase ON {table} (AccountId, {column} COLLATE NOCASE)");
            }
            catch (SqliteException e) when (e.SqliteErrorCode == 19)
            {
                // Duplicates from before: kept, and reachable by their exact spelling.
            }
        }

        // Stores made before session policies existed gain the column (existing sessions have none).
        if (!c.Query<string>("SELECT name FROM pragma_table_info('TemporaryKeys')").Contains("SessionPolicy"))
        {
            c.Execute("ALTER TABLE TemporaryKeys ADD COLUMN SessionPolicy TEXT");
        }
    }

    public SqliteConnection Open()
    {
        var c = new SqliteConnection(_connectionString);
        c.Open();
        c.Execute("PRAGMA synchronous=FULL;");
        return c;
    }

    /// <summary>Runs an insert, turning a uniqueness violation into <paramref name="conflict"/>.</summary>
    public void Insert(string sql, object row, Func<KmsException> conflict)
    {
        try
        {
            using var c = Open();
            c.Execute(sql, row);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19)
        {
            throw conflict();
        }
    }
}
