using System.Data;
using Dapper;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms.Errors;

namespace TdeEngine.Kms.Store;

/// <summary>
/// The embedded key store: one SQLite file in WAL mode, shared safely by several processes (the
/// server and the CLI). Every change runs in a <c>BEGIN IMMEDIATE</c> transaction, so a
/// read-check-write sequence is atomic across processes; <c>synchronous=FULL</c> makes a committed
/// key version durable before any ciphertext under it is handed out.
/// </summary>
/// <remarks>
/// It stores only what backends give it: wrapped material for software keys, references for HSM
/// keys. Thread-safe: each call uses its own pooled connection.
/// </remarks>
internal sealed class SqliteKeyStore : IDisposable
{
    private const int SchemaVersion = 2;

    private readonly string _connectionString;
    private readonly SqliteConnection _monitor;
    private readonly Lock _monitorLock = new();
    private volatile bool _disposed;

    public SqliteKeyStore(string path)
    {
        SQLitePCL.Batteries_V2.Init();
        Path = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        CreateOwnerOnlyFile(Path);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = Path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Cache = SqliteCacheMode.Private,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
        InitializeSchema();
        _monitor = Open();
    }

    public string Path { get; }

    /// <summary>
    /// A number that changes whenever another connection (in this or another process) commits.
    /// The key ring uses it to know when its cache is stale.
    /// </summary>
    public long DataVersion()
    {
        lock (_monitorLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _monitor.ExecuteScalar<long>("PRAGMA data_version;");
        }
    }

    // ---- reads -------------------------------------------------------------------------------

    public KeyRecord? GetKey(string keyId)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<KeyRow>("SELECT * FROM Keys WHERE KeyId = @keyId", new { keyId })?.ToRecord();
    }

    public IReadOnlyList<KeyRecord> ListKeys(string accountId, string regionId)
    {
        using var c = Open();
        return c.Query<KeyRow>("SELECT * FROM Keys WHERE AccountId = @accountId AND RegionId = @regionId ORDER BY CreationDate, rowid",
            new { accountId, regionId }).Select(r => r.ToRecord()).ToList();
    }

    public IReadOnlyList<KeyVersionRecord> GetVersions(string keyId)
    {
        using var c = Open();
        return c.Query<VersionRow>("SELECT * FROM KeyVersions WHERE KeyId = @keyId ORDER BY CreationDate, Seq", new { keyId })
            .Select(r => r.ToRecord()).ToList();
    }

    /// <summary>The current material of the named versions that still exist and hold material (for sweeping opened ciphers).</summary>
    public IReadOnlyDictionary<string, byte[]> LiveVersionMaterial(IReadOnlyCollection<string> versionIds)
    {
        if (versionIds.Count == 0)
        {
            return new Dictionary<string, byte[]>();
        }

        using var c = Open();
        return c.Query<(string KeyVersionId, byte[] Material)>(
                "SELECT KeyVersionId, Material FROM KeyVersions WHERE length(Material) > 0 AND KeyVersionId IN @versionIds", new { versionIds })
            .ToDictionary(r => r.KeyVersionId, r => r.Material, StringComparer.Ordinal);
    }

    public string? FindAlias(string accountId, string regionId, string aliasName)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<string>(
            "SELECT KeyId FROM Aliases WHERE AccountId = @accountId AND RegionId = @regionId AND AliasName = @aliasName",
            new { accountId, regionId, aliasName });
    }

    public IReadOnlyList<AliasRecord> ListAliases(string accountId, string regionId, string? keyId = null)
    {
        using var c = Open();
        return c.Query<AliasRecord>(
            "SELECT AccountId, RegionId, AliasName, KeyId FROM Aliases WHERE AccountId = @accountId AND RegionId = @regionId " +
            "AND (@keyId IS NULL OR KeyId = @keyId) ORDER BY AliasName", new { accountId, regionId, keyId }).ToList();
    }

    public IReadOnlyList<TagRecord> ListTags(string keyId)
    {
        using var c = Open();
        return c.Query<TagRecord>("SELECT KeyId, TagKey, TagValue FROM Tags WHERE KeyId = @keyId ORDER BY TagKey", new { keyId }).ToList();
    }

    public KmsInstanceRecord? GetInstance(string instanceId)
    {
        using var c = Open();
        return c.QuerySingleOrDefault<InstanceRow>("SELECT * FROM Instances WHERE InstanceId = @instanceId", new { instanceId })?.ToRecord();
    }

    public IReadOnlyList<KmsInstanceRecord> ListInstances(string accountId, string regionId)
    {
        using var c = Open();
        return c.Query<InstanceRow>("SELECT * FROM Instances WHERE AccountId = @accountId AND RegionId = @regionId ORDER BY CreationDate",
            new { accountId, regionId }).Select(r => r.ToRecord()).ToList();
    }

    /// <summary>Keys whose deletion window has passed.</summary>
    public IReadOnlyList<string> KeysDueForDeletion(DateTimeOffset now)
    {
        using var c = Open();
        return c.Query<string>("SELECT KeyId FROM Keys WHERE KeyState = 'PendingDeletion' AND DeleteDate <= @now",
            new { now = now.ToUnixTimeMilliseconds() }).ToList();
    }

    /// <summary>Enabled keys with automatic rotation whose next rotation date has passed.</summary>
    public IReadOnlyList<string> KeysDueForRotation(DateTimeOffset now)
    {
        using var c = Open();
        return c.Query<string>(
            "SELECT KeyId FROM Keys WHERE AutomaticRotation = 1 AND KeyState = 'Enabled' AND NextRotationDate <= @now",
            new { now = now.ToUnixTimeMilliseconds() }).ToList();
    }

    // ---- writes ------------------------------------------------------------------------------

    public void InsertInstance(KmsInstanceRecord instance)
    {
        using var c = Open();
        c.Execute("INSERT INTO Instances (InstanceId, AccountId, RegionId, ProductType, KeyNum, Spec, CreationDate) " +
                  "VALUES (@InstanceId, @AccountId, @RegionId, @ProductType, @KeyNum, @Spec, @CreationDate)", InstanceRow.From(instance));
    }

    /// <summary>
    /// Inserts a key with its first version (none for a key awaiting imported material) and tags.
    /// When the key is in an instance, the instance's key quota is checked in the same transaction.
    /// </summary>
    public void InsertKey(KeyRecord key, KeyVersionRecord? version, IReadOnlyList<TagRecord> tags, KmsInstanceRecord? instance)
    {
        InTransaction(c =>
        {
            if (instance is not null)
            {
                var count = c.ExecuteScalar<long>("SELECT COUNT(*) FROM Keys WHERE DkmsInstanceId = @InstanceId", new { instance.InstanceId });
                if (count >= instance.KeyNum)
                {
                    throw KmsErrors.KeyQuotaExceeded(instance.InstanceId, instance.KeyNum);
                }
            }

            InsertKeyRows(c, key, version, tags);
            return 0;
        });
    }

    /// <summary>Applies <paramref name="change"/> to the current record atomically and returns the new record.</summary>
    public KeyRecord UpdateKey(string keyId, Func<KeyRecord, KeyRecord> change) => InTransaction(c =>
    {
        var current = c.QuerySingleOrDefault<KeyRow>("SELECT * FROM Keys WHERE KeyId = @keyId", new { keyId })?.ToRecord()
                      ?? throw KmsErrors.KeyNotFound(keyId);
        var updated = change(current);
        if (!ReferenceEquals(updated, current))
        {
            WriteKey(c, updated);
        }

        return updated;
    });

    /// <summary>Adds a version made by <paramref name="makeVersion"/> and updates the key record, atomically.</summary>
    public (KeyRecord Key, KeyVersionRecord Version) AddVersion(string keyId, Func<KeyRecord, (KeyRecord, KeyVersionRecord)> makeVersion) =>
        InTransaction(c =>
        {
            var current = c.QuerySingleOrDefault<KeyRow>("SELECT * FROM Keys WHERE KeyId = @keyId", new { keyId })?.ToRecord()
                          ?? throw KmsErrors.KeyNotFound(keyId);
            var (updated, version) = makeVersion(current);
            WriteKey(c, updated);
            InsertVersion(c, version);
            return (updated, version);
        });

    /// <summary>Returns the service key of a product, creating it (key, version, alias) on first use.</summary>
    public KeyRecord GetOrCreateServiceKey(string accountId, string regionId, string aliasName,
        Func<(KeyRecord Key, KeyVersionRecord Version)> create) => InTransaction(c =>
    {
        var existing = c.QuerySingleOrDefault<string>(
            "SELECT KeyId FROM Aliases WHERE AccountId = @accountId AND RegionId = @regionId AND AliasName = @aliasName",
            new { accountId, regionId, aliasName });
        if (existing is not null)
        {
            return c.QuerySingle<KeyRow>("SELECT * FROM Keys WHERE KeyId = @existing", new { existing }).ToRecord();
        }

        var (key, version) = create();
        InsertKeyRows(c, key, version, []);
        c.Execute("INSERT INTO Aliases (AccountId, RegionId, AliasName, KeyId) VALUES (@accountId, @regionId, @aliasName, @KeyId)",
            new { accountId, regionId, aliasName, key.KeyId });
        return key;
    });

    public void InsertImportToken(ImportTokenRecord token)
    {
        using var c = Open();
        c.Execute("INSERT INTO ImportTokens (Token, KeyId, WrappingAlgorithm, WrappingKeySpec, ExpireTime, WrappedPrivateKey) " +
                  "VALUES (@Token, @KeyId, @WrappingAlgorithm, @WrappingKeySpec, @ExpireTime, @WrappedPrivateKey)",
            new { token.Token, token.KeyId, token.WrappingAlgorithm, token.WrappingKeySpec, ExpireTime = token.ExpireTime.ToUnixTimeMilliseconds(), token.WrappedPrivateKey });
    }

    public ImportTokenRecord? GetImportToken(string token)
    {
        using var c = Open();
        var row = c.QuerySingleOrDefault<(string Token, string KeyId, string WrappingAlgorithm, string WrappingKeySpec, long ExpireTime, byte[] WrappedPrivateKey)>(
            "SELECT Token, KeyId, WrappingAlgorithm, WrappingKeySpec, ExpireTime, WrappedPrivateKey FROM ImportTokens WHERE Token = @token", new { token });
        return row.Token is null ? null
            : new ImportTokenRecord(row.Token, row.KeyId, row.WrappingAlgorithm, row.WrappingKeySpec, DateTimeOffset.FromUnixTimeMilliseconds(row.ExpireTime), row.WrappedPrivateKey);
    }

    /// <summary>
    /// The import tokens that have expired, that belong to <paramref name="keyId"/>, or whose key is
    /// gone: the private key of a token must not outlive its 24 hours, or its key (with it and a copy
    /// of the wrapped material, a deleted key could be rebuilt).
    /// </summary>
    public IReadOnlyList<(ImportTokenRecord Token, string? ProtectionLevel)> StaleImportTokens(DateTimeOffset now, string? keyId = null)
    {
        using var c = Open();
        return c.Query<(string Token, string KeyId, string WrappingAlgorithm, string WrappingKeySpec, long ExpireTime, byte[] WrappedPrivateKey, string? ProtectionLevel)>(
                "SELECT t.Token, t.KeyId, t.WrappingAlgorithm, t.WrappingKeySpec, t.ExpireTime, t.WrappedPrivateKey, k.ProtectionLevel " +
                "FROM ImportTokens t LEFT JOIN Keys k ON k.KeyId = t.KeyId " +
                "WHERE t.ExpireTime <= @now OR t.KeyId = @keyId OR k.KeyId IS NULL",
                new { now = now.ToUnixTimeMilliseconds(), keyId })
            .Select(r => (new ImportTokenRecord(r.Token, r.KeyId, r.WrappingAlgorithm, r.WrappingKeySpec, DateTimeOffset.FromUnixTimeMilliseconds(r.ExpireTime), r.WrappedPrivateKey),
                r.ProtectionLevel))
            .ToList();
    }

    public void DeleteImportToken(string token)
    {
        using var c = Open();
        c.Execute("DELETE FROM ImportTokens WHERE Token = @token", new { token });
    }

    /// <summary>EXTERNAL keys whose imported material has expired and is still held.</summary>
    public IReadOnlyList<string> KeysWithExpiredMaterial(DateTimeOffset now)
    {
        using var c = Open();
        return c.Query<string>(
            "SELECT DISTINCT k.KeyId FROM Keys k JOIN KeyVersions v ON v.KeyId = k.KeyId " +
            "WHERE k.Origin = 'EXTERNAL' AND k.MaterialExpireTime <= @now AND length(v.Material) > 0",
            new { now = now.ToUnixTimeMilliseconds() }).ToList();
    }

    /// <summary>Sets (or clears, with an empty array) the material of an existing version, and the key record, atomically.</summary>
    public KeyRecord SetVersionMaterial(string keyId, string versionId, byte[] material, Func<KeyRecord, KeyRecord> change) => InTransaction(c =>
    {
        var current = c.QuerySingleOrDefault<KeyRow>("SELECT * FROM Keys WHERE KeyId = @keyId", new { keyId })?.ToRecord()
                      ?? throw KmsErrors.KeyNotFound(keyId);
        var updated = change(current);
        c.Execute("UPDATE KeyVersions SET Material = @material WHERE KeyId = @keyId AND KeyVersionId = @versionId", new { material, keyId, versionId });
        WriteKey(c, updated);
        return updated;
    });

    /// <summary>
    /// Inserts an alias of a key that exists and is not pending deletion, checked in the same
    /// statement (a purge or a ScheduleKeyDeletion by another process cannot slip in between).
    /// False when the key no longer qualifies.
    /// </summary>
    public bool InsertAlias(AliasRecord alias)
    {
        try
        {
            using var c = Open();
            return c.Execute(
                "INSERT INTO Aliases (AccountId, RegionId, AliasName, KeyId) SELECT @AccountId, @RegionId, @AliasName, @KeyId " +
                "WHERE EXISTS (SELECT 1 FROM Keys WHERE KeyId = @KeyId AND KeyState <> 'PendingDeletion')", alias) == 1;
        }
        catch (SqliteException e) when (e.SqliteExtendedErrorCode is 2067 or 1555 /* SQLITE_CONSTRAINT_UNIQUE, _PRIMARYKEY */)
        {
            throw KmsErrors.AliasExists(alias.AliasName);
        }
    }

    /// <summary>Points an existing alias at a key that exists and is not pending deletion; null when the alias does not exist, false when the key no longer qualifies.</summary>
    public bool? UpdateAlias(AliasRecord alias) => InTransaction(c =>
    {
        if (c.ExecuteScalar<long>("SELECT COUNT(*) FROM Aliases WHERE AccountId = @AccountId AND RegionId = @RegionId AND AliasName = @AliasName", alias) == 0)
        {
            return (bool?)null;
        }

        return c.Execute(
            "UPDATE Aliases SET KeyId = @KeyId WHERE AccountId = @AccountId AND RegionId = @RegionId AND AliasName = @AliasName " +
            "AND EXISTS (SELECT 1 FROM Keys WHERE KeyId = @KeyId AND KeyState <> 'PendingDeletion')", alias) == 1;
    });

    public bool DeleteAlias(string accountId, string regionId, string aliasName)
    {
        using var c = Open();
        return c.Execute("DELETE FROM Aliases WHERE AccountId = @accountId AND RegionId = @regionId AND AliasName = @aliasName",
            new { accountId, regionId, aliasName }) == 1;
    }

    /// <summary>Upserts tags; fails when the key would hold more than <paramref name="maxTags"/>.</summary>
    public void SetTags(string keyId, IReadOnlyList<TagRecord> tags, int maxTags) => InTransaction(c =>
    {
        foreach (var tag in tags)
        {
            c.Execute("INSERT INTO Tags (KeyId, TagKey, TagValue) VALUES (@KeyId, @TagKey, @TagValue) " +
                      "ON CONFLICT (KeyId, TagKey) DO UPDATE SET TagValue = excluded.TagValue", tag);
        }

        var count = c.ExecuteScalar<long>("SELECT COUNT(*) FROM Tags WHERE KeyId = @keyId", new { keyId });
        if (count > maxTags)
        {
            throw KmsErrors.InvalidParameter("Tags", $"a key can hold at most {maxTags} tags.");
        }

        return 0;
    });

    public void RemoveTags(string keyId, IReadOnlyList<string> tagKeys)
    {
        using var c = Open();
        c.Execute("DELETE FROM Tags WHERE KeyId = @keyId AND TagKey IN @tagKeys", new { keyId, tagKeys });
    }

    /// <summary>
    /// Removes a key whose deletion is due, with its versions, aliases and tags, in one transaction.
    /// Returns the removed versions (for backends that hold material outside the store; empty for a
    /// key that never had material), or null when the key was already gone or is no longer due.
    /// </summary>
    public IReadOnlyList<KeyVersionRecord>? PurgeKey(string keyId, DateTimeOffset now) => InTransaction(c =>
    {
        var due = c.ExecuteScalar<long>("SELECT COUNT(*) FROM Keys WHERE KeyId = @keyId AND KeyState = 'PendingDeletion' AND DeleteDate <= @now",
            new { keyId, now = now.ToUnixTimeMilliseconds() });
        if (due == 0)
        {
            return (IReadOnlyList<KeyVersionRecord>?)null;
        }

        var versions = c.Query<VersionRow>("SELECT * FROM KeyVersions WHERE KeyId = @keyId", new { keyId }).Select(r => r.ToRecord()).ToList();
        c.Execute("DELETE FROM Aliases WHERE KeyId = @keyId", new { keyId });
        c.Execute("DELETE FROM Tags WHERE KeyId = @keyId", new { keyId });
        c.Execute("DELETE FROM KeyVersions WHERE KeyId = @keyId", new { keyId });
        c.Execute("DELETE FROM Keys WHERE KeyId = @keyId", new { keyId });
        return versions;
    });

    public void Dispose()
    {
        lock (_monitorLock)
        {
            _disposed = true;
            _monitor.Dispose();
        }
    }

    // ---- plumbing ----------------------------------------------------------------------------

    private SqliteConnection Open()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var c = new SqliteConnection(_connectionString);
        c.Open();
        c.Execute("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;");
        return c;
    }

    private T InTransaction<T>(Func<SqliteConnection, T> work)
    {
        using var c = Open();
        using var tx = c.BeginTransaction(IsolationLevel.Serializable, deferred: false);
        var result = work(c);
        tx.Commit();
        return result;
    }

    private void InitializeSchema()
    {
        using var c = Open();
        c.Execute("PRAGMA journal_mode = WAL;");
        using var tx = c.BeginTransaction(deferred: false);
        var version = c.ExecuteScalar<long>("PRAGMA user_version;");
        if (version > SchemaVersion)
        {
            throw new InvalidOperationException(
                $"The key store '{Path}' has schema version {version}, newer than this build understands ({SchemaVersion}). Upgrade TdeEngine.");
        }

        if (version < 1)
        {
            c.Execute("""
                CREATE TABLE IF NOT EXISTS Instances (
                    InstanceId TEXT PRIMARY KEY, AccountId TEXT NOT NULL, RegionId TEXT NOT NULL, ProductType TEXT NOT NULL,
                    KeyNum INTEGER NOT NULL, Spec INTEGER NOT NULL, CreationDate INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS Keys (
                    KeyId TEXT PRIMARY KEY, AccountId TEXT NOT NULL, RegionId TEXT NOT NULL, Description TEXT NOT NULL,
                    KeySpec TEXT NOT NULL, KeyUsage TEXT NOT NULL, Origin TEXT NOT NULL, ProtectionLevel TEXT NOT NULL,
                    Creator TEXT NOT NULL, CreationDate INTEGER NOT NULL, KeyState TEXT NOT NULL, PrimaryKeyVersion TEXT,
                    DeletionProtection INTEGER NOT NULL, DeletionProtectionDescription TEXT, DeleteDate INTEGER,
                    AutomaticRotation INTEGER NOT NULL, RotationIntervalSeconds INTEGER, LastRotationDate INTEGER,
                    NextRotationDate INTEGER, DkmsInstanceId TEXT REFERENCES Instances(InstanceId), ServiceProduct TEXT,
                    MaterialExpireTime INTEGER);
                CREATE INDEX IF NOT EXISTS Keys_Scope ON Keys (AccountId, RegionId);
                CREATE INDEX IF NOT EXISTS Keys_Instance ON Keys (DkmsInstanceId);
                CREATE TABLE IF NOT EXISTS KeyVersions (
                    Seq INTEGER PRIMARY KEY AUTOINCREMENT, KeyVersionId TEXT NOT NULL UNIQUE,
                    KeyId TEXT NOT NULL REFERENCES Keys(KeyId), CreationDate INTEGER NOT NULL, Material BLOB NOT NULL);
                CREATE INDEX IF NOT EXISTS KeyVersions_Key ON KeyVersions (KeyId);
                CREATE TABLE IF NOT EXISTS Aliases (
                    AccountId TEXT NOT NULL, RegionId TEXT NOT NULL, AliasName TEXT NOT NULL,
                    KeyId TEXT NOT NULL REFERENCES Keys(KeyId), PRIMARY KEY (AccountId, RegionId, AliasName));
                CREATE INDEX IF NOT EXISTS Aliases_Key ON Aliases (KeyId);
                CREATE TABLE IF NOT EXISTS Tags (
                    KeyId TEXT NOT NULL REFERENCES Keys(KeyId), TagKey TEXT NOT NULL, TagValue TEXT NOT NULL,
                    PRIMARY KEY (KeyId, TagKey));
                """, transaction: tx);
        }

        if (version < 2)
        {
            // Version 2: BYOK (import tokens, and the fingerprint of imported material).
            c.Execute("""
                ALTER TABLE Keys ADD COLUMN MaterialFingerprint TEXT;
                CREATE TABLE IF NOT EXISTS ImportTokens (
                    Token TEXT PRIMARY KEY, KeyId TEXT NOT NULL, WrappingAlgorithm TEXT NOT NULL, WrappingKeySpec TEXT NOT NULL,
                    ExpireTime INTEGER NOT NULL, WrappedPrivateKey BLOB NOT NULL);
                """, transaction: tx);
        }

        if (version < SchemaVersion)
        {
            c.Execute($"PRAGMA user_version = {SchemaVersion};", transaction: tx);
        }

        tx.Commit();
    }

    private static void InsertKeyRows(SqliteConnection c, KeyRecord key, KeyVersionRecord? version, IReadOnlyList<TagRecord> tags)
    {
        c.Execute("""
            INSERT INTO Keys (KeyId, AccountId, RegionId, Description, KeySpec, KeyUsage, Origin, ProtectionLevel, Creator, CreationDate,
                KeyState, PrimaryKeyVersion, DeletionProtection, DeletionProtectionDescription, DeleteDate, AutomaticRotation,
                RotationIntervalSeconds, LastRotationDate, NextRotationDate, DkmsInstanceId, ServiceProduct, MaterialExpireTime, MaterialFingerprint)
            VALUES (@KeyId, @AccountId, @RegionId, @Description, @KeySpec, @KeyUsage, @Origin, @ProtectionLevel, @Creator, @CreationDate,
                @KeyState, @PrimaryKeyVersion, @DeletionProtection, @DeletionProtectionDescription, @DeleteDate, @AutomaticRotation,
                @RotationIntervalSeconds, @LastRotationDate, @NextRotationDate, @DkmsInstanceId, @ServiceProduct, @MaterialExpireTime, @MaterialFingerprint)
            """, KeyRow.From(key));
        if (version is not null)
        {
            InsertVersion(c, version);
        }

        foreach (var tag in tags)
        {
            c.Execute("INSERT INTO Tags (KeyId, TagKey, TagValue) VALUES (@KeyId, @TagKey, @TagValue)", tag);
        }
    }

    private static void InsertVersion(SqliteConnection c, KeyVersionRecord version) =>
        c.Execute("INSERT INTO KeyVersions (KeyVersionId, KeyId, CreationDate, Material) VALUES (@KeyVersionId, @KeyId, @CreationDate, @Material)",
            new { version.KeyVersionId, version.KeyId, CreationDate = version.CreationDate.ToUnixTimeMilliseconds(), version.Material });

    private static void WriteKey(SqliteConnection c, KeyRecord key) => c.Execute("""
        UPDATE Keys SET Description = @Description, KeyState = @KeyState, PrimaryKeyVersion = @PrimaryKeyVersion,
            DeletionProtection = @DeletionProtection, DeletionProtectionDescription = @DeletionProtectionDescription,
            DeleteDate = @DeleteDate, AutomaticRotation = @AutomaticRotation, RotationIntervalSeconds = @RotationIntervalSeconds,
            LastRotationDate = @LastRotationDate, NextRotationDate = @NextRotationDate, MaterialExpireTime = @MaterialExpireTime,
            MaterialFingerprint = @MaterialFingerprint
        WHERE KeyId = @KeyId
        """, KeyRow.From(key));

    // SQLite gives its -wal and -shm files the database file's mode, so creating the (empty) database
    // file as 0600 keeps the whole store owner-only whatever the umask.
    private static void CreateOwnerOnlyFile(string path)
    {
        if (OperatingSystem.IsWindows() || File.Exists(path))
        {
            return;
        }

        try
        {
            using var _ = new FileStream(path, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            });
        }
        catch (IOException) when (File.Exists(path))
        {
            // Another process created it first.
        }
    }

    private static long? Ms(DateTimeOffset? d) => d?.ToUnixTimeMilliseconds();

    private static DateTimeOffset? FromMs(long? ms) => ms is null ? null : DateTimeOffset.FromUnixTimeMilliseconds(ms.Value);

    // Row shapes as SQLite returns them (INTEGER = long, dates as Unix milliseconds).
    private sealed class KeyRow
    {
        public string KeyId { get; set; } = "";
        public string AccountId { get; set; } = "";
        public string RegionId { get; set; } = "";
        public string Description { get; set; } = "";
        public string KeySpec { get; set; } = "";
        public string KeyUsage { get; set; } = "";
        public string Origin { get; set; } = "";
        public string ProtectionLevel { get; set; } = "";
        public string Creator { get; set; } = "";
        public long CreationDate { get; set; }
        public string KeyState { get; set; } = "";
        public string? PrimaryKeyVersion { get; set; }
        public long DeletionProtection { get; set; }
        public string? DeletionProtectionDescription { get; set; }
        public long? DeleteDate { get; set; }
        public long AutomaticRotation { get; set; }
        public long? RotationIntervalSeconds { get; set; }
        public long? LastRotationDate { get; set; }
        public long? NextRotationDate { get; set; }
        public string? DkmsInstanceId { get; set; }
        public string? ServiceProduct { get; set; }
        public long? MaterialExpireTime { get; set; }
        public string? MaterialFingerprint { get; set; }

        public KeyRecord ToRecord() => new()
        {
            KeyId = KeyId, AccountId = AccountId, RegionId = RegionId, Description = Description, KeySpec = KeySpec,
            KeyUsage = KeyUsage, Origin = Origin, ProtectionLevel = ProtectionLevel, Creator = Creator,
            CreationDate = DateTimeOffset.FromUnixTimeMilliseconds(CreationDate), KeyState = KeyState,
            PrimaryKeyVersion = PrimaryKeyVersion, DeletionProtection = DeletionProtection != 0,
            DeletionProtectionDescription = DeletionProtectionDescription, DeleteDate = FromMs(DeleteDate),
            AutomaticRotation = AutomaticRotation != 0, RotationIntervalSeconds = RotationIntervalSeconds,
            LastRotationDate = FromMs(LastRotationDate), NextRotationDate = FromMs(NextRotationDate), DkmsInstanceId = DkmsInstanceId,
            ServiceProduct = ServiceProduct, MaterialExpireTime = FromMs(MaterialExpireTime), MaterialFingerprint = MaterialFingerprint,
        };

        public static KeyRow From(KeyRecord k) => new()
        {
            KeyId = k.KeyId, AccountId = k.AccountId, RegionId = k.RegionId, Description = k.Description, KeySpec = k.KeySpec,
            KeyUsage = k.KeyUsage, Origin = k.Origin, ProtectionLevel = k.ProtectionLevel, Creator = k.Creator,
            CreationDate = k.CreationDate.ToUnixTimeMilliseconds(), KeyState = k.KeyState, PrimaryKeyVersion = k.PrimaryKeyVersion,
            DeletionProtection = k.DeletionProtection ? 1 : 0, DeletionProtectionDescription = k.DeletionProtectionDescription,
            DeleteDate = Ms(k.DeleteDate), AutomaticRotation = k.AutomaticRotation ? 1 : 0, RotationIntervalSeconds = k.RotationIntervalSeconds,
            LastRotationDate = Ms(k.LastRotationDate), NextRotationDate = Ms(k.NextRotationDate), DkmsInstanceId = k.DkmsInstanceId,
            ServiceProduct = k.ServiceProduct, MaterialExpireTime = Ms(k.MaterialExpireTime), MaterialFingerprint = k.MaterialFingerprint,
        };
    }

    private sealed class VersionRow
    {
        public long Seq { get; set; }
        public string KeyVersionId { get; set; } = "";
        public string KeyId { get; set; } = "";
        public long CreationDate { get; set; }
        public byte[] Material { get; set; } = [];

        public KeyVersionRecord ToRecord() => new(KeyId, KeyVersionId, DateTimeOffset.FromUnixTimeMilliseconds(CreationDate), Material);
    }

    private sealed class InstanceRow
    {
        public string InstanceId { get; set; } = "";
        public string AccountId { get; set; } = "";
        public string RegionId { get; set; } = "";
        public string ProductType { get; set; } = "";
        public long KeyNum { get; set; }
        public long Spec { get; set; }
        public long CreationDate { get; set; }

        public KmsInstanceRecord ToRecord() => new(InstanceId, AccountId, RegionId, ProductType, (int)KeyNum, (int)Spec,
            DateTimeOffset.FromUnixTimeMilliseconds(CreationDate));

        public static InstanceRow From(KmsInstanceRecord i) => new()
        {
            InstanceId = i.InstanceId, AccountId = i.AccountId, RegionId = i.RegionId, ProductType = i.ProductType, KeyNum = i.KeyNum,
            Spec = i.Spec, CreationDate = i.CreationDate.ToUnixTimeMilliseconds(),
        };
    }
}
