using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using TdeEngine.Kms.Errors;
using TdeEngine.Storage.Envelope;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Keys;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Vfs;

/// <summary>
/// The TDE VFS: a shim over SQLite's default (<c>unix</c>) VFS, registered from managed code with
/// <c>[UnmanagedCallersOnly]</c> callbacks. It wraps every file SQLite opens and hands each to a
/// handler that knows its layout: the database file, its rollback journal or WAL, or a temp file.
/// </summary>
/// <remarks>
/// <para>Memory layout of a file object (SQLite allocates <c>szOsFile</c> bytes):
/// <c>[ pMethods 8 | GCHandle of the handler 8 | wrapped unix file ... ]</c>.</para>
/// <para>No exception crosses a callback: failures are recorded (<see cref="LastError"/>) and become
/// SQLite result codes. The native structs live in unmanaged memory for the life of the process.</para>
/// <para>io_methods are version 3, but <c>xFetch</c> never hands SQLite a pointer: SQLite cannot use
/// mapped pages in place, because they are ciphertext, so every page is read through
/// <c>xRead</c> and decrypted. What <c>PRAGMA mmap_size</c> buys on a TDE connection is that the
/// wrapped unix file maps the sealed file and serves those reads by copying from the mapping
/// instead of a <c>pread</c> system call each; SQLite's own invalidation (<c>xUnfetch(0, NULL)</c>
/// when another connection changed the file) is passed through. The ciphertext is copied into
/// SQLite's private buffer before it is opened, so a concurrent writer of the shared mapping cannot
/// change it between authentication and decryption.</para>
/// </remarks>
internal static unsafe class TdeVfs
{
    private const int HeaderSize = 16;

    private static readonly Lock RegisterLock = new();
    private static readonly Dictionary<string, IntPtr> Registered = new(StringComparer.Ordinal);
    private static SqliteVfs* s_default;
    private static SqliteIoMethods* s_methods;
    private static volatile Configuration? s_config;

    [ThreadStatic]
    private static TdeStorageException? t_lastError;

    /// <summary>What the VFS runs with: options, the KMS behind the DEKs, the DEK cache.</summary>
    internal sealed record Configuration(TdeStorageOptions Options, DekCache Keys);

    /// <summary>The last storage failure on this thread, or null.</summary>
    public static TdeStorageException? LastError => t_lastError;

    /// <summary>Raised for every storage failure (for logging); never with key material.</summary>
    public static event Action<TdeStorageException>? Failure;

    internal static Configuration Current => s_config ?? throw new TdeStorageException(TdeStorageException.Codes.NotRegistered,
        "The TDE VFS is not registered. Call TdeSqlite.Register(...) once at start-up.");

    /// <summary>Registers (or re-configures) the VFS under <see cref="TdeStorageOptions.VfsName"/>.</summary>
    public static void Register(TdeStorageOptions options, IDataKeyProvider provider)
    {
        options.Validate();
        lock (RegisterLock)
        {
            SQLitePCL.Batteries_V2.Init();
            var previous = s_config;
            s_config = new Configuration(options, new DekCache(provider, options.TimeProvider, options.DekCacheTtl));
            previous?.Keys.Clear();
            if (Registered.ContainsKey(options.VfsName))
            {
                return;
            }

            if (s_default is null)
            {
                s_default = SqliteNative.sqlite3_vfs_find(null);
                if (s_default is null)
                {
                    throw new InvalidOperationException("SQLite has no default VFS to wrap.");
                }

                s_methods = CreateMethods();
                var extension = SqliteNative.sqlite3_auto_extension(&ApplyConnectionDefaults);
                if (extension != SqliteNative.SQLITE_OK)
                {
                    throw new InvalidOperationException($"sqlite3_auto_extension failed with {extension}.");
                }
            }

            var vfs = (SqliteVfs*)NativeMemory.AllocZeroed((nuint)sizeof(SqliteVfs));
            *vfs = *s_default;   // xDlOpen, xRandomness, xSleep, xCurrentTime... ignore their vfs argument
            vfs->iVersion = Math.Min(s_default->iVersion, 3);
            vfs->szOsFile = HeaderSize + s_default->szOsFile;
            vfs->pNext = null;
            vfs->pAppData = null;
            var name = Encoding.UTF8.GetBytes(options.VfsName + "\0");
            vfs->zName = (byte*)NativeMemory.Alloc((nuint)name.Length);
            name.CopyTo(new Span<byte>(vfs->zName, name.Length));
            vfs->xOpen = &XOpen;
            vfs->xDelete = &XDelete;
            vfs->xAccess = &XAccess;
            vfs->xFullPathname = &XFullPathname;
            var rc = SqliteNative.sqlite3_vfs_register(vfs, 0);
            if (rc != SqliteNative.SQLITE_OK)
            {
                throw new InvalidOperationException($"sqlite3_vfs_register failed with {rc}.");
            }

            Registered[options.VfsName] = (IntPtr)vfs;
        }
    }

    /// <summary>Records a failure for <see cref="LastError"/> and returns <paramref name="rc"/>.</summary>
    internal static int Fail(TdeStorageException error, int rc)
    {
        t_lastError = error;
        try
        {
            Failure?.Invoke(error);
        }
        catch
        {
            // A logging hook must not turn a reported error into a crash inside SQLite.
        }

        return rc;
    }

    internal static void ClearLastError() => t_lastError = null;

    /// <summary>The handler of the main database that a journal or WAL name belongs to.</summary>
    private static MainDatabaseHandler? MainHandlerOf(byte* journalName)
    {
        var main = SqliteNative.sqlite3_database_file_object(journalName);
        return main is null || main->pMethods != s_methods ? null : Handler(main) as MainDatabaseHandler;
    }

    private static FileHandler Handler(SqliteFile* file) => (FileHandler)GCHandle.FromIntPtr(*(IntPtr*)((byte*)file + 8)).Target!;

    private static SqliteFile* UnderlyingOf(SqliteFile* file) => (SqliteFile*)((byte*)file + HeaderSize);

    // ---------------------------------------------------------------- sqlite3_vfs

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XOpen(SqliteVfs* vfs, byte* zName, SqliteFile* file, int flags, int* outFlags)
    {
        file->pMethods = null;
        var underlying = UnderlyingOf(file);
        var path = zName is null ? null : Marshal.PtrToStringUTF8((IntPtr)zName);
        try
        {
            var config = Current;
            long memoryMapSize = 0;
            if ((flags & SqliteNative.SQLITE_OPEN_MAIN_DB) != 0)
            {
                memoryMapSize = UriParameter<long>(zName, path, "mmap_size", "a number of bytes, 0 or more",
                    static v => long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null) ?? config.Options.MemoryMapSize;
                // Without powersafe overwrite SQLite pads WAL commits to a sector by writing parts of
                // frames, and syncs a journal header it left without its magic: neither is a whole
                // page the VFS can seal. Refused before anything is created.
                if (SqliteNative.UriParameter(zName, "psow") is { } psow && psow.Trim().ToLowerInvariant() is "0" or "no" or "off" or "false")
                {
                    throw new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation,
                        $"The URI parameter 'psow={psow}' of '{path}' is not supported on a TDE database: the VFS seals whole pages and needs SQLite's powersafe-overwrite layout (the default).", path);
                }

                if (path is not null && (flags & SqliteNative.SQLITE_OPEN_CREATE) != 0)
                {
                    CreateIfNew(path, CreationParameters.From(zName, path), config);
                }
            }

            var rc = s_default->xOpen(s_default, zName, underlying, flags, outFlags);
            if (rc != SqliteNative.SQLITE_OK)
            {
                return rc;
            }

            FileHandler handler;
            try
            {
                handler = CreateHandler(zName, path, flags, underlying, config, memoryMapSize);
            }
            catch
            {
                if (underlying->pMethods is not null)
                {
                    underlying->pMethods->xClose(underlying);
                }

                throw;
            }

            *(IntPtr*)((byte*)file + 8) = GCHandle.ToIntPtr(GCHandle.Alloc(handler));
            file->pMethods = s_methods;
            return SqliteNative.SQLITE_OK;
        }
        catch (TdeStorageException e)
        {
            return Fail(e, e.Code switch
            {
                TdeStorageException.Codes.KeyUnavailable => SqliteNative.SQLITE_AUTH,
                TdeStorageException.Codes.NotTdeDatabase or TdeStorageException.Codes.PlaintextDatabase => SqliteNative.SQLITE_NOTADB,
                TdeStorageException.Codes.EnvelopeDamaged => SqliteNative.SQLITE_CORRUPT,
                _ => SqliteNative.SQLITE_CANTOPEN,
            });
        }
        catch (KmsException e)
        {
            return Fail(new TdeStorageException(TdeStorageException.Codes.KeyUnavailable,
                $"The KMS refused to create a DEK for '{path}': {e.Code}: {e.Message}", path, inner: e), SqliteNative.SQLITE_AUTH);
        }
        catch (Exception e)
        {
            return Fail(new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation,
                $"Opening '{path ?? "(temporary file)"}' failed: {e.Message}", path, inner: e), SqliteNative.SQLITE_CANTOPEN);
        }
    }

    private static FileHandler CreateHandler(byte* zName, string? path, int flags, SqliteFile* underlying, Configuration config, long memoryMapSize)
    {
        if ((flags & SqliteNative.SQLITE_OPEN_MAIN_DB) != 0)
        {
            var handler = MainDatabaseHandler.Open(underlying, path!, config.Keys);
            try
            {
                handler.RefuseOtherCreationParameters(CreationParameters.From(zName, path!), readOnly: (flags & SqliteNative.SQLITE_OPEN_READWRITE) == 0);
            }
            catch
            {
                handler.Close();
                throw;
            }

            handler.MemoryMapSize = memoryMapSize;
            handler.BusyTimeoutMs = (int)config.Options.BusyTimeout.TotalMilliseconds;
            return handler;
        }

        if ((flags & (SqliteNative.SQLITE_OPEN_MAIN_JOURNAL | SqliteNative.SQLITE_OPEN_WAL)) != 0)
        {
            var main = MainHandlerOf(zName) ?? throw new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation,
                $"The journal '{path}' belongs to a database that is not open through the TDE VFS.", path);
            return (flags & SqliteNative.SQLITE_OPEN_WAL) != 0
                ? new WalHandler(underlying, path, main.Crypto, main)
                : new JournalHandler(underlying, path, main.Crypto);
        }

        if ((flags & SqliteNative.SQLITE_OPEN_SUPER_JOURNAL) != 0)
        {
            return new FileHandler(underlying, path);   // holds only the names of the journals
        }

        return new SealedTempHandler(underlying, path);   // temp and transient databases, statement and temp journals
    }

    /// <summary>
    /// A database file that does not exist yet (or is empty) becomes a new TDE database: a DEK from the
    /// KMS and the envelope, marked empty (no page yet: SQLite sees an empty file), written to a
    /// temporary file and moved into place without overwriting, so two processes creating it at once
    /// agree on one envelope.
    /// </summary>
    private static void CreateIfNew(string path, CreationParameters parameters, Configuration config)
    {
        var info = new FileInfo(path);
        if (info.Exists && info.Length > 0)
        {
            return;
        }

        var options = config.Options;
        var image = NewDatabaseImage.Create(parameters.KmsKeyId ?? options.DefaultKmsKeyId, parameters.Cipher ?? options.DefaultCipher,
            parameters.PageSize ?? options.DefaultPageSize, config.Keys);
        var temp = path + ".tde-new-" + Guid.NewGuid().ToString("N");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.WriteThrough))
            {
                stream.Write(image);
                stream.Flush(flushToDisk: true);
            }

            try
            {
                File.Move(temp, path, overwrite: info.Exists && new FileInfo(path).Length == 0);
            }
            catch (IOException) when (File.Exists(path) && new FileInfo(path).Length > 0)
            {
                // Another connection created it first: use theirs.
            }
        }
        finally
        {
            File.Delete(temp);
        }
    }

    /// <summary>What the URI of a main database names for a new file: <c>kms_key=</c>, <c>cipher=</c>, <c>page_size=</c> (null: not named).</summary>
    internal sealed record CreationParameters(string? KmsKeyId, PageCipherSuite? Cipher, int? PageSize)
    {
        public static CreationParameters From(byte* zName, string path) => new(
            SqliteNative.UriParameter(zName, "kms_key"),
            UriParameter(zName, path, "cipher", "aes-256-gcm or aegis-256", PageCipherSuites.TryParse),
            UriParameter<int>(zName, path, "page_size", "a power of two from 1024 to 65536",
                static v => int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && TdeStorageOptions.IsValidPageSize(n) ? n : null));
    }

    /// <summary>A URI parameter of the file name, parsed; a value that does not parse fails the open with <c>Tde.InvalidParameter</c>.</summary>
    private static T? UriParameter<T>(byte* zName, string? path, string name, string expected, Func<string, T?> parse)
        where T : struct
    {
        if (SqliteNative.UriParameter(zName, name) is not { } value)
        {
            return null;
        }

        return parse(value) ?? throw new TdeStorageException(TdeStorageException.Codes.InvalidParameter,
            $"The URI parameter '{name}={value}' of '{path}' is not valid: expected {expected}.", path);
    }

    /// <summary>
    /// Runs for every new SQLite connection (<c>sqlite3_auto_extension</c>). When its main database
    /// is a TDE database, it sets <c>PRAGMA busy_timeout</c> (<see cref="TdeStorageOptions.BusyTimeout"/>)
    /// and, with a memory-map size (options or <c>mmap_size=</c> in the URI), <c>PRAGMA mmap_size</c>,
    /// so apps change only their connection string. Other connections are left alone.
    /// </summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int ApplyConnectionDefaults(IntPtr db, byte** errorMessage, void* api)
    {
        try
        {
            SqliteFile* file = null;
            fixed (byte* main = "main\0"u8)
            {
                if (SqliteNative.sqlite3_file_control(db, main, SqliteNative.SQLITE_FCNTL_FILE_POINTER, &file) != SqliteNative.SQLITE_OK
                    || file is null || file->pMethods != s_methods || Handler(file) is not MainDatabaseHandler handler
                    || (handler.MemoryMapSize == 0 && handler.BusyTimeoutMs == 0))
                {
                    return SqliteNative.SQLITE_OK;
                }

                var pragmas = (handler.BusyTimeoutMs > 0 ? string.Create(CultureInfo.InvariantCulture, $"PRAGMA busy_timeout={handler.BusyTimeoutMs};") : "") +
                              (handler.MemoryMapSize > 0 ? string.Create(CultureInfo.InvariantCulture, $"PRAGMA main.mmap_size={handler.MemoryMapSize};") : "");
                var sql = Encoding.UTF8.GetBytes(pragmas + "\0");
                fixed (byte* p = sql)
                {
                    return SqliteNative.sqlite3_exec(db, p, null, null, null);
                }
            }
        }
        catch (Exception e)
        {
            return Fail(new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation, $"Applying the TDE connection defaults failed: {e.Message}", inner: e),
                SqliteNative.SQLITE_ERROR);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XDelete(SqliteVfs* vfs, byte* zName, int syncDir) => s_default->xDelete(s_default, zName, syncDir);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XAccess(SqliteVfs* vfs, byte* zName, int flags, int* result) => s_default->xAccess(s_default, zName, flags, result);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XFullPathname(SqliteVfs* vfs, byte* zName, int nOut, byte* zOut) => s_default->xFullPathname(s_default, zName, nOut, zOut);

    // ---------------------------------------------------------------- sqlite3_io_methods

    private static SqliteIoMethods* CreateMethods()
    {
        var m = (SqliteIoMethods*)NativeMemory.AllocZeroed((nuint)sizeof(SqliteIoMethods));
        m->iVersion = 3;   // xFetch never returns a mapping: mapped pages would bypass decryption (see remarks)
        m->xClose = &XClose;
        m->xRead = &XRead;
        m->xWrite = &XWrite;
        m->xTruncate = &XTruncate;
        m->xSync = &XSync;
        m->xFileSize = &XFileSize;
        m->xLock = &XLock;
        m->xUnlock = &XUnlock;
        m->xCheckReservedLock = &XCheckReservedLock;
        m->xFileControl = &XFileControl;
        m->xSectorSize = &XSectorSize;
        m->xDeviceCharacteristics = &XDeviceCharacteristics;
        m->xShmMap = &XShmMap;
        m->xShmLock = &XShmLock;
        m->xShmBarrier = &XShmBarrier;
        m->xShmUnmap = &XShmUnmap;
        m->xFetch = &XFetch;
        m->xUnfetch = &XUnfetch;
        return m;
    }

    private static int Guard(SqliteFile* file, int failure, Func<FileHandler, int> call)
    {
        try
        {
            return call(Handler(file));
        }
        catch (TdeStorageException e)
        {
            return Fail(e, failure);
        }
        catch (Exception e)
        {
            return Fail(new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation, e.Message, Handler(file).Path, inner: e), failure);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XClose(SqliteFile* file)
    {
        var slot = (IntPtr*)((byte*)file + 8);
        var handle = GCHandle.FromIntPtr(*slot);
        try
        {
            return ((FileHandler)handle.Target!).Close();
        }
        catch (Exception e)
        {
            return Fail(new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation, e.Message, inner: e), SqliteNative.SQLITE_IOERR);
        }
        finally
        {
            handle.Free();
            *slot = IntPtr.Zero;
            file->pMethods = null;
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XRead(SqliteFile* file, byte* buffer, int amount, long offset)
    {
        try
        {
            return Handler(file).Read(buffer, amount, offset);
        }
        catch (TdeStorageException e)
        {
            return Fail(e, SqliteNative.SQLITE_IOERR_READ);
        }
        catch (Exception e)
        {
            return Fail(new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation, e.Message, inner: e), SqliteNative.SQLITE_IOERR_READ);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XWrite(SqliteFile* file, byte* buffer, int amount, long offset)
    {
        try
        {
            return Handler(file).Write(buffer, amount, offset);
        }
        catch (TdeStorageException e)
        {
            return Fail(e, SqliteNative.SQLITE_IOERR_WRITE);
        }
        catch (Exception e)
        {
            return Fail(new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation, e.Message, inner: e), SqliteNative.SQLITE_IOERR_WRITE);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XTruncate(SqliteFile* file, long size) => Guard(file, SqliteNative.SQLITE_IOERR, h => h.Truncate(size));

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XSync(SqliteFile* file, int flags) => Guard(file, SqliteNative.SQLITE_IOERR, h => h.Sync(flags));

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XFileSize(SqliteFile* file, long* size)
    {
        try
        {
            return Handler(file).FileSize(size);
        }
        catch (Exception e)
        {
            return Fail(new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation, e.Message, inner: e), SqliteNative.SQLITE_IOERR);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XLock(SqliteFile* file, int level) => Handler(file).Lock(level);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XUnlock(SqliteFile* file, int level) => Handler(file).Unlock(level);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XCheckReservedLock(SqliteFile* file, int* result) => Handler(file).CheckReservedLock(result);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XFileControl(SqliteFile* file, int op, void* arg)
    {
        try
        {
            return Handler(file).FileControl(op, arg);
        }
        catch (Exception e)
        {
            return Fail(new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation, e.Message, inner: e), SqliteNative.SQLITE_ERROR);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XSectorSize(SqliteFile* file) => Handler(file).SectorSize();

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XDeviceCharacteristics(SqliteFile* file) => Handler(file).DeviceCharacteristics();

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XShmMap(SqliteFile* file, int page, int pageSize, int extend, void** mapping) =>
        Handler(file).ShmMap(page, pageSize, extend, mapping);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XShmLock(SqliteFile* file, int offset, int n, int flags) => Handler(file).ShmLock(offset, n, flags);

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void XShmBarrier(SqliteFile* file) => Handler(file).ShmBarrier();

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XShmUnmap(SqliteFile* file, int deleteFlag) => Handler(file).ShmUnmap(deleteFlag);

    // SQLite then reads the page with xRead, which decrypts it.
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XFetch(SqliteFile* file, long offset, int amount, void** page)
    {
        *page = null;
        try
        {
            return Handler(file).Fetch(offset, amount);
        }
        catch (Exception e)
        {
            return Fail(new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation, e.Message, inner: e), SqliteNative.SQLITE_IOERR);
        }
    }

    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static int XUnfetch(SqliteFile* file, long offset, void* page) =>
        page is null ? Handler(file).Unmap() : SqliteNative.SQLITE_OK;   // no page was ever handed out
}
