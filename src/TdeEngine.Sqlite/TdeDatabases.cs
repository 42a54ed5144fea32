using System.Globalization;
using Microsoft.Data.Sqlite;
using TdeEngine.Storage;
using TdeEngine.Storage.Envelope;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Sqlite;

/// <summary>
/// Whole-database operations: create, encrypt an existing plaintext database, decrypt (export) to
/// plaintext, read the status of a TDE file, verify it, re-wrap its DEKs after a KMS key rotation,
/// and re-encrypt it under a new DEK. Encrypt and decrypt write a new file beside the target and
/// move it into place only when it is complete and checked, so a crash midway leaves the original
/// untouched and never a half-encrypted file.
/// </summary>
/// <remarks>
/// A database being encrypted or decrypted must not be in use by other connections. Status,
/// verify, re-wrap and re-encryption run beside open connections.
/// </remarks>
public static class TdeDatabases
{
    /// <summary>Creates a new, empty TDE database. Fails if the file exists.</summary>
    public static void Create(string path, string? kmsKeyId = null, PageCipherSuite? cipher = null, int? pageSize = null)
    {
        path = Path.GetFullPath(path);
        if (File.Exists(path))
        {
            throw new IOException($"'{path}' already exists.");
        }

        RequireFolder(path);
        using var connection = new SqliteConnection(TdeUri(path, kmsKeyId, cipher, pageSize));
        TdeSqlite.Explain(() =>
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA schema_version";
            return command.ExecuteScalar();
        });
    }

    /// <summary>
    /// Encrypts a plaintext SQLite database: into <paramref name="outputPath"/>, or in place when it is
    /// null (the plaintext file is replaced atomically once the encrypted copy is complete).
    /// </summary>
    public static void Encrypt(string plainPath, string? outputPath = null, string? kmsKeyId = null, PageCipherSuite? cipher = null)
    {
        plainPath = Path.GetFullPath(plainPath);
        var target = Path.GetFullPath(outputPath ?? plainPath);
        // A file that starts as SQLite does is plaintext, whatever its second 2 KiB hold (a TDE file never does).
        if (File.Exists(plainPath) && !HasHeader(plainPath, "SQLite format 3\0"u8) && HasEnvelopeSlot(plainPath))
        {
            throw new TdeStorageException(TdeStorageException.Codes.InvalidParameter,
                $"'{plainPath}' is already a TDE database: there is nothing to encrypt. 'tde db rekey' (TdeDatabases.Rekey) gives it a new DEK; 'tde db rewrap --key KEY' (TdeDatabases.Rewrap) moves it under another KMS key.", plainPath);
        }

        RequireHeader(plainPath, "SQLite format 3\0"u8, $"'{plainPath}' is not a plaintext SQLite database.");
        if (target != plainPath && File.Exists(target))
        {
            throw new IOException($"'{target}' already exists; choose another --out.");
        }

        RequireFolder(target);
        var pageSize = ReadPlainPageSize(plainPath);
        var temp = TempBeside(target, "encrypt");
        try
        {
            using (var destination = new SqliteConnection(TdeUri(temp, kmsKeyId, cipher, Math.Max(pageSize, 1024))))
            {
                TdeSqlite.Explain(() =>
                {
                    destination.Open();
                    Copy(destination, source: $"file:{TdeSqlite.EscapeForUri(plainPath)}?vfs=unix&mode=ro");
                    return 0;
                });
            }

            Replace(temp, target, deleteSidecars: true);
        }
        finally
        {
            DeleteQuietly(temp);
        }
    }

    /// <summary>Decrypts (exports) a TDE database to a new plaintext SQLite file.</summary>
    public static void Decrypt(string tdePath, string plainOutputPath)
    {
        tdePath = Path.GetFullPath(tdePath);
        plainOutputPath = Path.GetFullPath(plainOutputPath);
        if (File.Exists(plainOutputPath))
        {
            throw new IOException($"'{plainOutputPath}' already exists; choose another --out.");
        }

        RequireFolder(plainOutputPath);
        var status = Status(tdePath);
        var temp = TempBeside(plainOutputPath, "decrypt");
        try
        {
            // A file: URI, so that Microsoft.Data.Sqlite opens with SQLITE_OPEN_URI and ATTACH takes the vfs= parameter.
            using (var destination = new SqliteConnection(ConnectionStringFor($"file:{TdeSqlite.EscapeForUri(temp)}")))
            {
                TdeSqlite.Explain(() =>
                {
                    destination.Open();
                    Execute(destination, $"PRAGMA page_size={status.PageSize.ToString(CultureInfo.InvariantCulture)}");
                    Copy(destination, source: $"file:{TdeSqlite.EscapeForUri(tdePath)}?vfs={TdeVfsName}&mode=ro");
                    return 0;
                });
            }

            Replace(temp, plainOutputPath, deleteSidecars: false);
        }
        finally
        {
            DeleteQuietly(temp);
        }
    }

    /// <summary>
    /// Writes a consistent copy of a TDE database, which may be in use, to a new TDE file with a DEK
    /// of its own (SQLite's <c>VACUUM INTO</c>: one read transaction, so writers in WAL mode carry
    /// on; the copy is compact). It keeps the source's cipher and page size, and its DEK is wrapped
    /// by <paramref name="kmsKeyId"/> (default: the key that wraps the source's DEKs). The copy is
    /// written beside the destination, verified page by page and with <c>PRAGMA integrity_check</c>,
    /// then moved into place; the destination must not exist.
    /// </summary>
    public static TdeDatabaseVerification Backup(string sourcePath, string destinationPath, string? kmsKeyId = null)
    {
        sourcePath = Path.GetFullPath(sourcePath);
        destinationPath = Path.GetFullPath(destinationPath);
        if (File.Exists(destinationPath))
        {
            throw new IOException($"'{destinationPath}' already exists; choose another --out.");
        }

        RequireFolder(destinationPath);

        DatabaseEnvelope envelope;
        using (var file = RawDatabaseFile.Open(sourcePath, writable: false))
        {
            envelope = ReadEnvelope(file);
        }

        var key = kmsKeyId ?? envelope.WrappingKeyId(sourcePath);
        var temp = TempBeside(destinationPath, "backup");
        try
        {
            // A file: URI, so that Microsoft.Data.Sqlite opens with SQLITE_OPEN_URI and VACUUM INTO takes
            // the target's parameters. Read-write (nothing is written by the copy): SQLite then plays
            // back a hot journal left by a crash, and removes the -wal and -shm of a WAL database
            // nobody else has open when it closes, as for any connection.
            using (var source = new SqliteConnection(ConnectionStringFor($"file:{TdeSqlite.EscapeForUri(sourcePath)}?vfs={TdeVfsName}&mode=rw")))
            {
                var target = TdeFileUri(temp, key, envelope.Suite, envelope.PageSize);
                TdeSqlite.Explain(() =>
                {
                    source.Open();
                    Execute(source, $"VACUUM INTO '{target.Replace("'", "''", StringComparison.Ordinal)}'");
                    return 0;
                });
            }

            var check = Verify(temp);
            if (!check.Intact)
            {
                throw new TdeStorageException(TdeStorageException.Codes.PageAuthenticationFailed,
                    $"The backup of '{sourcePath}' did not verify, so it was not kept: {check.Message}", destinationPath);
            }

            File.Move(temp, destinationPath, overwrite: false);
            return check with { Path = destinationPath };
        }
        finally
        {
            DeleteQuietly(temp);
        }
    }

    /// <summary>
    /// Reads the envelope and page trailers of a TDE file. Needs no key and no KMS, so it does not
    /// check the envelope's MAC (it needs the DEK); it says whether the envelope carries one.
    /// </summary>
    public static TdeDatabaseStatus Status(string path)
    {
        path = Path.GetFullPath(path);
        using var file = RawDatabaseFile.Open(path, writable: false);
        var envelope = ReadEnvelope(file);
        var pages = Math.Max(0, (file.Length - DatabaseEnvelope.RegionSize) / envelope.PageSize);
        var perVersion = new SortedDictionary<uint, long>();
        var trailer = new byte[4];
        var lockBytePage = LockBytePage(envelope.PageSize);
        for (long page = 0; page < pages; page++)
        {
            if (page + 1 == lockBytePage)
            {
                continue;
            }

            file.Read(trailer, DatabaseEnvelope.RegionSize + (page * envelope.PageSize) + envelope.PageSize - envelope.Reserve);
            var version = ((uint)trailer[1] << 16) | ((uint)trailer[2] << 8) | trailer[3];
            perVersion[version] = perVersion.GetValueOrDefault(version) + 1;
        }

        return new TdeDatabaseStatus
        {
            Path = path,
            DatabaseId = envelope.DatabaseIdHex,
            KmsKeyArn = envelope.KmsKeyArn,
            Cipher = envelope.Suite,
            PageSize = envelope.PageSize,
            ReservedBytes = envelope.Reserve,
            PageCount = pages,
            Empty = envelope.Empty,
            ActiveDekVersion = envelope.ActiveDekVersion,
            EnvelopeSequence = envelope.Sequence,
            EnvelopeAuthenticated = envelope.Authenticated,
            EnvelopeDowngradeProtected = envelope.Authenticated && envelope.Deks.All(d => d.EnvelopeBound),
            Deks = envelope.Deks.Select(d => new TdeDekStatus(d.Version, d.Suite, d.SealsReserved, PageCipherSuites.SealLimit(d.Suite),
                d.SealsReserved >= PageCipherSuites.SealLimit(d.Suite) / 2)).ToList(),
            PagesPerDekVersion = perVersion,
        };
    }

    /// <summary>
    /// Re-wraps a database's DEKs under the current version of <paramref name="kmsKeyId"/> (default:
    /// the key that wraps them now, after it rotated) with KMS ReEncrypt, and writes the new
    /// envelope into both of its slots. Only the envelope changes: no page is read or rewritten, the
    /// DEKs stay the same, and connections already open carry on. Afterwards the old key (or key
    /// version) is no longer needed to open the file.
    /// </summary>
    /// <remarks>
    /// Runs under SQLite's write lock on the database (other writers wait), so no writer moves the
    /// envelope meanwhile. A WAL checkpoint in another process can still record a seal reservation
    /// from the envelope it read just before: the newest envelope is read back after writing, and the
    /// re-wrap is written again if it lost.
    /// </remarks>
    public static TdeDatabaseStatus Rewrap(string path, string? kmsKeyId = null)
    {
        path = Path.GetFullPath(path);
        using var file = RawDatabaseFile.Open(path, writable: true);
        _ = ReadEnvelope(file);   // a TDE database, or Tde.NotTdeDatabase before anything else
        var keys = Storage.Vfs.TdeVfs.Current.Keys;
        var provider = keys.Provider;
        using var connection = new SqliteConnection(TdeSqlite.ConnectionString(path, SqliteOpenMode.ReadWrite));
        TdeSqlite.Explain(() =>
        {
            connection.Open();
            Execute(connection, "BEGIN IMMEDIATE");
            return 0;
        });
        try
        {
            for (var attempt = 0; ; attempt++)
            {
                var current = ReadEnvelope(file);
                // The DEK stays the same, so does the MAC key: an edited envelope is refused here
                // (Tde.EnvelopeTampered) rather than signed again with the new wrapping.
                using var macKey = EnvelopeAuthentication.Authenticate(current, path, keys);
                // Without --key the DEKs stay with the key that wraps them now, as the wrapped DEKs
                // themselves name it: the envelope's ARN field is not authenticated.
                var destination = kmsKeyId ?? current.WrappingKeyId(path);
                var arn = current.KmsKeyArn;
                var deks = new List<EnvelopeDek>(current.Deks.Count);
                foreach (var dek in current.Deks)
                {
                    var rewrapped = provider.ReEncrypt(dek.WrappedDek, current.ContextOf(dek), destination);
                    deks.Add(dek with { WrappedDek = rewrapped.Wrapped });
                    arn = rewrapped.KmsKeyArn;
                }

                // Both slots, one after the other: no copy of the old wrapping stays behind.
                var next = current with { Sequence = current.Sequence + 1, KmsKeyArn = arn, Deks = deks };
                WriteEnvelopeSlot(file, next, macKey);
                WriteEnvelopeSlot(file, next with { Sequence = next.Sequence + 1 }, macKey);

                var written = ReadEnvelope(file);
                if (written.KmsKeyArn == arn && written.Deks.Count == deks.Count &&
                    written.Deks.Zip(deks).All(pair => pair.First.WrappedDek.AsSpan().SequenceEqual(pair.Second.WrappedDek)))
                {
                    break;
                }

                if (attempt == 4)
                {
                    throw new IOException($"The envelope of '{path}' kept changing while it was re-wrapped; retry when the database is less busy.");
                }
            }
        }
        finally
        {
            Execute(connection, "ROLLBACK");
        }

        return Status(path);
    }

    /// <summary>
    /// Re-encrypts a database under a new DEK, online: the KMS makes a new DEK, it becomes the one new
    /// pages are sealed under, every page is opened and sealed again under it in batches of
    /// <paramref name="batchPages"/>, and the old DEKs are then removed from the envelope (from both
    /// slots), so the file no longer depends on them. Connections stay open and keep working
    /// meanwhile; each batch holds the database's pages for a moment. Run it again after a crash:
    /// pages a crash tore are put back from the journal, and it resumes where it stopped.
    /// </summary>
    /// <param name="path">The TDE database.</param>
    /// <param name="progress">Called after each batch, and once at the end.</param>
    /// <param name="batchPages">Pages per batch (each batch is one lock, one journal fsync and one database fsync).</param>
    /// <param name="lockTimeout">How long to wait for a busy database before a batch (default 60 s).</param>
    /// <returns>The status afterwards: one DEK, every page under it.</returns>
    public static TdeDatabaseStatus Rekey(string path, Action<TdeRekeyProgress>? progress = null, int batchPages = 256, TimeSpan? lockTimeout = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchPages, 1);
        path = Path.GetFullPath(path);
        using (var job = new DekReencryption(path, lockTimeout ?? TimeSpan.FromSeconds(60)))
        {
            job.Run(batchPages, progress);
        }

        return Status(path);
    }

    /// <summary>
    /// The page that holds byte offset 1 GiB (SQLite's lock bytes) in files larger than that: SQLite
    /// never writes it, so it is never sealed, and status, verify and re-encryption skip it.
    /// </summary>
    internal static long LockBytePage(int pageSize) => (0x40000000L / pageSize) + 1;

    internal static DatabaseEnvelope ReadEnvelope(RawDatabaseFile file)
    {
        var region = new byte[DatabaseEnvelope.RegionSize];
        file.Read(region, 0);   // a shorter file reads as zeros past its end, which no envelope slot is
        return DatabaseEnvelope.Read(region, file.Path);
    }

    /// <summary>Writes the envelope (with its MAC under <paramref name="macKey"/>, the MAC key of its active DEK) into its slot, and syncs.</summary>
    internal static void WriteEnvelopeSlot(RawDatabaseFile file, DatabaseEnvelope envelope, EnvelopeMacKey macKey)
    {
        var slot = new byte[DatabaseEnvelope.SlotSize];
        envelope.WriteSlot(slot, macKey);
        file.Write(slot, DatabaseEnvelope.SlotOffset(envelope.Sequence));
        file.Sync();
    }

    /// <summary>
    /// Authenticates every page of a TDE file with its DEKs (from the KMS, through the registered VFS)
    /// and lists all that fail, not only the first as a query would; checks that the file holds every
    /// page page 1's header counts; when all pass, runs <c>PRAGMA integrity_check</c>. For backups and
    /// restore drills: nothing is written.
    /// </summary>
    /// <remarks>
    /// A page being written by another connection at that moment can read as torn: a page that fails
    /// is read again (three times in all) before it is reported. A last page cut short counts as a
    /// page that fails.
    /// </remarks>
    public static TdeDatabaseVerification Verify(string path)
    {
        path = Path.GetFullPath(path);
        using var file = RawDatabaseFile.Open(path, writable: false);
        var envelope = ReadEnvelope(file);
        using var crypto = Storage.Vfs.MainDatabaseHandler.OpenCrypto(envelope, path, Storage.Vfs.TdeVfs.Current.Keys);
        var pageSize = envelope.PageSize;
        var pages = Math.Max(0, (file.Length - DatabaseEnvelope.RegionSize + pageSize - 1) / pageSize);   // a partial last page counts
        var sealedPage = new byte[pageSize];
        var plain = GC.AllocateUninitializedArray<byte>(pageSize, pinned: true);
        var bad = new List<long>();
        long? claimed = null;
        try
        {
            var lockBytePage = LockBytePage(pageSize);
            for (long page = 1; page <= pages; page++)
            {
                if (page == lockBytePage)
                {
                    continue;
                }

                var opened = false;
                for (var attempt = 0; attempt < 3 && !opened; attempt++)
                {
                    if (attempt > 0)
                    {
                        Thread.Sleep(10);
                    }

                    var n = file.Read(sealedPage, DatabaseEnvelope.RegionSize + ((page - 1) * pageSize));
                    opened = n == pageSize && crypto.TryOpen(PageFileKind.Database, page, sealedPage, plain);
                }

                if (!opened)
                {
                    bad.Add(page);
                }
                else if (page == 1)
                {
                    claimed = Storage.Vfs.MainDatabaseHandler.ClaimedPages(plain) is > 0 and var count ? count : null;
                }
            }
        }
        finally
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(plain);
        }

        if (pages == 0 && !envelope.Empty)
        {
            claimed = 1;   // page 1 must be there: the file was cut back to its envelope
        }

        string? integrity = null;
        if (bad.Count == 0 && !(claimed > pages))
        {
            using var connection = new SqliteConnection(TdeSqlite.ConnectionString(path, SqliteOpenMode.ReadOnly));
            try
            {
                integrity = TdeSqlite.Explain(() =>
                {
                    connection.Open();
                    using var command = connection.CreateCommand();
                    command.CommandText = "PRAGMA integrity_check";
                    using var reader = command.ExecuteReader();
                    var lines = new List<string>();
                    while (reader.Read())
                    {
                        lines.Add(reader.GetString(0));
                    }

                    return string.Join("; ", lines);
                });
            }
            catch (SqliteException e) when (e.SqliteErrorCode is 11 or 26)   // SQLITE_CORRUPT, SQLITE_NOTADB
            {
                integrity = $"SQLite could not check the database: {e.Message}";
            }
            catch (TdeStorageException e) when (e.Code == TdeStorageException.Codes.PageAuthenticationFailed)
            {
                // A page (or the WAL) changed under the check: report it, as for a page that fails above.
                integrity = $"SQLite could not check the database: {e.Message}";
            }
        }

        return new TdeDatabaseVerification(path, pages, bad, integrity)
        {
            HeaderPageCount = claimed,
            InterruptedTransaction = HotJournalBeside(path),
        };
    }

    private static string TdeVfsName => "tde";

    // SQLite's test for a hot journal, less the lock: the journal exists and its first byte is not
    // zero (a committed journal is deleted, truncated, or has its header zeroed). SQLite locks the
    // database file, never the journal, so reading it here drops no lock.
    private static bool HotJournalBeside(string path)
    {
        try
        {
            using var journal = new FileStream(path + "-journal", FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            return journal.ReadByte() is > 0;
        }
        catch (IOException)
        {
            return false;   // none (FileNotFoundException is an IOException), or it went away
        }
    }

    private static string TdeUri(string path, string? kmsKeyId, PageCipherSuite? cipher, int? pageSize) =>
        ConnectionStringFor(TdeFileUri(path, kmsKeyId, cipher, pageSize));

    // Through the builder, which quotes the value: a path may hold ';' or '"'.
    private static string ConnectionStringFor(string dataSource) =>
        new SqliteConnectionStringBuilder { DataSource = dataSource, Pooling = false }.ToString();

    private static string TdeFileUri(string path, string? kmsKeyId, PageCipherSuite? cipher, int? pageSize)
    {
        var query = new List<string> { "vfs=" + TdeVfsName };
        if (kmsKeyId is not null)
        {
            query.Add("kms_key=" + Uri.EscapeDataString(kmsKeyId));
        }

        if (cipher is { } suite)
        {
            query.Add("cipher=" + PageCipherSuites.Name(suite));
        }

        if (pageSize is { } size)
        {
            TdeStorageOptions.ValidatePageSize(size);
            query.Add("page_size=" + size.ToString(CultureInfo.InvariantCulture));
        }

        return $"file:{TdeSqlite.EscapeForUri(path)}?{string.Join('&', query)}";
    }

    // The logical copy that sqlcipher_export performs: schema, rows, sequences, then indexes, views,
    // triggers. Rowids are kept (an FTS index or the app may refer to them). A virtual table (FTS3/4/5,
    // R-tree, ...) is created from its statement, which makes its shadow tables, and their rows are
    // then copied as they are: the index arrives exactly as it was, without being rebuilt.
    private static void Copy(SqliteConnection destination, string source)
    {
        Execute(destination, "PRAGMA foreign_keys=OFF");
        using (var attach = destination.CreateCommand())
        {
            attach.CommandText = "ATTACH DATABASE $uri AS src";
            attach.Parameters.AddWithValue("$uri", source);
            attach.ExecuteNonQuery();
        }

        var objects = new List<(string Type, string Name, string Sql)>();
        using (var command = destination.CreateCommand())
        {
            command.CommandText = "SELECT type, name, sql FROM src.sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid";
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                objects.Add((reader.GetString(0), reader.GetString(1), reader.GetString(2)));
            }
        }

        // What each table is: 'table', 'virtual' or 'shadow' (a virtual table's storage), and whether it has rowids.
        var kinds = new Dictionary<string, (string Kind, bool WithoutRowid)>(StringComparer.OrdinalIgnoreCase);
        using (var command = destination.CreateCommand())
        {
            command.CommandText = "SELECT name, type, wr FROM pragma_table_list WHERE schema = 'src'";
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                kinds[reader.GetString(0)] = (reader.GetString(1), reader.GetInt64(2) != 0);
            }
        }

        var tables = objects.Where(o => o.Type == "table" && !o.Name.StartsWith("sqlite_", StringComparison.OrdinalIgnoreCase)).ToList();
        using var tx = destination.BeginTransaction();
        foreach (var table in tables.Where(t => kinds[t.Name].Kind == "table"))
        {
            Execute(destination, table.Sql);
        }

        foreach (var table in tables.Where(t => kinds[t.Name].Kind == "virtual"))
        {
            try
            {
                Execute(destination, table.Sql);
            }
            catch (SqliteException e) when (e.Message.Contains("no such module", StringComparison.Ordinal))
            {
                throw new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation,
                    $"The virtual table '{table.Name}' needs a module this SQLite build does not have ({e.Message}); the database was not converted. Drop the table, convert, and recreate it.",
                    inner: e);
            }
        }

        foreach (var table in tables.Where(t => kinds[t.Name].Kind is "table" or "shadow"))
        {
            if (kinds[table.Name].Kind == "shadow")
            {
                Execute(destination, $"DELETE FROM main.{Quote(table.Name)}");   // what creating the virtual table put there
            }

            var columns = StoredColumns(destination, table.Name);
            var rowid = kinds[table.Name].WithoutRowid ? null : RowidAlias(destination, table.Name);
            var list = rowid is null ? columns : $"{rowid}, {columns}";
            Execute(destination, $"INSERT INTO main.{Quote(table.Name)} ({list}) SELECT {list} FROM src.{Quote(table.Name)}");
        }

        if (objects.Any(o => o.Name == "sqlite_sequence"))
        {
            Execute(destination, "DELETE FROM main.sqlite_sequence; INSERT INTO main.sqlite_sequence SELECT * FROM src.sqlite_sequence");
        }

        // Indexes on shadow tables came with their virtual table.
        foreach (var other in objects.Where(o => o.Type is "index" or "view" or "trigger" && !IsOnShadowTable(destination, o.Name, kinds)))
        {
            Execute(destination, other.Sql);
        }

        foreach (var pragma in new[] { "user_version", "application_id" })
        {
            using var read = destination.CreateCommand();
            read.CommandText = $"PRAGMA src.{pragma}";
            var value = Convert.ToInt64(read.ExecuteScalar(), CultureInfo.InvariantCulture);
            Execute(destination, $"PRAGMA main.{pragma}={value.ToString(CultureInfo.InvariantCulture)}");
        }

        tx.Commit();
        Execute(destination, "DETACH DATABASE src");
        using var check = destination.CreateCommand();
        check.CommandText = "PRAGMA integrity_check";
        var result = Convert.ToString(check.ExecuteScalar(), CultureInfo.InvariantCulture);
        if (result != "ok")
        {
            throw new InvalidDataException($"The converted database failed its integrity check: {result}");
        }
    }

    // A name for the rowid that no column hides (rowid, _rowid_ or oid), or null if all three are columns.
    private static string? RowidAlias(SqliteConnection connection, string table)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT lower(name) FROM pragma_table_xinfo($table, 'src')";
        command.Parameters.AddWithValue("$table", table);
        using var reader = command.ExecuteReader();
        var columns = new HashSet<string>(StringComparer.Ordinal);
        while (reader.Read())
        {
            columns.Add(reader.GetString(0));
        }

        return new[] { "rowid", "_rowid_", "oid" }.FirstOrDefault(alias => !columns.Contains(alias));
    }

    private static bool IsOnShadowTable(SqliteConnection connection, string index, Dictionary<string, (string Kind, bool WithoutRowid)> kinds)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT tbl_name FROM src.sqlite_schema WHERE name = $name";
        command.Parameters.AddWithValue("$name", index);
        return command.ExecuteScalar() is string table && kinds.TryGetValue(table, out var kind) && kind.Kind == "shadow";
    }

    // Columns that hold data (generated columns are computed again in the copy).
    private static string StoredColumns(SqliteConnection connection, string table)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT name FROM pragma_table_xinfo($table, 'src') WHERE hidden NOT IN (2, 3) ORDER BY cid";
        command.Parameters.AddWithValue("$table", table);
        using var reader = command.ExecuteReader();
        var names = new List<string>();
        while (reader.Read())
        {
            names.Add(Quote(reader.GetString(0)));
        }

        return string.Join(", ", names);
    }

    internal static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    // Both read through SQLite's unix VFS (RawDatabaseFile): a descriptor of our own, once closed,
    // would drop the locks of any connection this process has on the file.
    private static void RequireHeader(string path, ReadOnlySpan<byte> magic, string message)
    {
        if (!File.Exists(path))
        {
            throw TdeStorageException.NoDatabaseFile(path);
        }

        if (!HasHeader(path, magic))
        {
            throw new TdeStorageException(TdeStorageException.Codes.NotTdeDatabase, message, path);
        }
    }

    // Either envelope copy (at 0 or at SlotSize, whichever was written last) starts with the magic.
    private static bool HasEnvelopeSlot(string path)
    {
        Span<byte> magic = stackalloc byte[8];
        using var file = RawDatabaseFile.Open(path, writable: false);
        return (file.Read(magic, 0) == magic.Length && magic.SequenceEqual(DatabaseEnvelope.Magic))
            || (file.Read(magic, DatabaseEnvelope.SlotSize) == magic.Length && magic.SequenceEqual(DatabaseEnvelope.Magic));
    }

    private static bool HasHeader(string path, ReadOnlySpan<byte> magic)
    {
        Span<byte> header = stackalloc byte[16];
        using var file = RawDatabaseFile.Open(path, writable: false);
        return file.Read(header, 0) >= magic.Length && header.StartsWith(magic);
    }

    private static int ReadPlainPageSize(string path)
    {
        Span<byte> header = stackalloc byte[18];
        using var file = RawDatabaseFile.Open(path, writable: false);
        file.Read(header, 0);
        var size = (header[16] << 8) | header[17];
        return size == 1 ? 65536 : size;
    }

    // A new file is written beside its target first: without this, a missing folder was reported
    // as a path that is not the user's (the temporary file's) or as SQLite's "unable to open database file".
    private static void RequireFolder(string path)
    {
        if (!Directory.Exists(Path.GetDirectoryName(path)))
        {
            throw new IOException($"The folder of '{path}' does not exist; create it first.");
        }
    }

    private static string TempBeside(string target, string what) =>
        Path.Combine(Path.GetDirectoryName(target)!, $".{Path.GetFileName(target)}.tde-{what}-{Guid.NewGuid():N}");

    // The finished file replaces the target in one rename; journals of the old file go with it.
    private static void Replace(string temp, string target, bool deleteSidecars)
    {
        foreach (var sidecar in new[] { "-journal", "-wal", "-shm" })
        {
            if (File.Exists(temp + sidecar))
            {
                throw new IOException($"The converted file still has a {sidecar} file; it was not closed cleanly.");
            }
        }

        File.Move(temp, target, overwrite: true);
        if (deleteSidecars)
        {
            foreach (var sidecar in new[] { "-wal", "-shm", "-journal" })
            {
                DeleteQuietly(target + sidecar);
            }
        }
    }

    private static void DeleteQuietly(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
    }
}
