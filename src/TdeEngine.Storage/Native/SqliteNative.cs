using System.Runtime.InteropServices;

namespace TdeEngine.Storage.Native;

/// <summary>
/// The few SQLite entry points the VFS needs that SQLitePCLRaw does not wrap. They bind to the
/// <c>e_sqlite3</c> library Microsoft.Data.Sqlite has already loaded.
/// </summary>
internal static unsafe partial class SqliteNative
{
    private const string Lib = "e_sqlite3";

    public const int SQLITE_OK = 0;
    public const int SQLITE_ERROR = 1;
    public const int SQLITE_PERM = 3;
    public const int SQLITE_NOMEM = 7;
    public const int SQLITE_READONLY = 8;
    public const int SQLITE_IOERR = 10;
    public const int SQLITE_CORRUPT = 11;
    public const int SQLITE_NOTFOUND = 12;
    public const int SQLITE_CANTOPEN = 14;
    public const int SQLITE_AUTH = 23;
    public const int SQLITE_NOTADB = 26;
    public const int SQLITE_IOERR_READ = SQLITE_IOERR | (1 << 8);
    public const int SQLITE_SYNC_NORMAL = 0x02;
    public const int SQLITE_IOERR_SHORT_READ = SQLITE_IOERR | (2 << 8);
    public const int SQLITE_IOERR_WRITE = SQLITE_IOERR | (3 << 8);
    public const int SQLITE_IOERR_TRUNCATE = SQLITE_IOERR | (6 << 8);
    public const int SQLITE_IOERR_DATA = SQLITE_IOERR | (32 << 8);
    public const int SQLITE_IOERR_LOCK = SQLITE_IOERR | (15 << 8);
    public const int SQLITE_IOERR_SHMLOCK = SQLITE_IOERR | (20 << 8);

    public const int SQLITE_LOCK_SHARED = 1;
    public const int SQLITE_LOCK_RESERVED = 2;
    public const int SQLITE_SHM_UNLOCK = 1;
    public const int SQLITE_SHM_LOCK = 2;
    public const int SQLITE_SHM_EXCLUSIVE = 8;

    public const int SQLITE_OPEN_READONLY = 0x00000001;
    public const int SQLITE_OPEN_READWRITE = 0x00000002;
    public const int SQLITE_OPEN_CREATE = 0x00000004;
    public const int SQLITE_OPEN_DELETEONCLOSE = 0x00000008;
    public const int SQLITE_OPEN_MAIN_DB = 0x00000100;
    public const int SQLITE_OPEN_TEMP_DB = 0x00000200;
    public const int SQLITE_OPEN_TRANSIENT_DB = 0x00000400;
    public const int SQLITE_OPEN_MAIN_JOURNAL = 0x00000800;
    public const int SQLITE_OPEN_TEMP_JOURNAL = 0x00001000;
    public const int SQLITE_OPEN_SUBJOURNAL = 0x00002000;
    public const int SQLITE_OPEN_SUPER_JOURNAL = 0x00004000;
    public const int SQLITE_OPEN_WAL = 0x00080000;

    public const int SQLITE_IOCAP_SUBPAGE_READ = 0x00008000;
    public const int SQLITE_FCNTL_SIZE_HINT = 5;
    public const int SQLITE_FCNTL_FILE_POINTER = 7;
    public const int SQLITE_FCNTL_MMAP_SIZE = 18;
    public const int SQLITE_FCNTL_RESERVE_BYTES = 38;

    [LibraryImport(Lib)]
    public static partial SqliteVfs* sqlite3_vfs_find(byte* zVfsName);

    [LibraryImport(Lib)]
    public static partial int sqlite3_vfs_register(SqliteVfs* vfs, int makeDefault);

    [LibraryImport(Lib)]
    public static partial SqliteFile* sqlite3_database_file_object(byte* zName);

    [LibraryImport(Lib)]
    public static partial byte* sqlite3_uri_parameter(byte* zFilename, byte* zParam);

    [LibraryImport(Lib)]
    public static partial int sqlite3_open_v2(byte* filename, IntPtr* db, int flags, byte* vfs);

    [LibraryImport(Lib)]
    public static partial int sqlite3_close_v2(IntPtr db);

    [LibraryImport(Lib)]
    public static partial int sqlite3_auto_extension(delegate* unmanaged[Cdecl]<IntPtr, byte**, void*, int> entryPoint);

    [LibraryImport(Lib)]
    public static partial int sqlite3_file_control(IntPtr db, byte* zDbName, int op, void* arg);

    [LibraryImport(Lib)]
    public static partial int sqlite3_exec(IntPtr db, byte* sql, void* callback, void* argument, byte** errorMessage);

    public static string? UriParameter(byte* filename, string name)
    {
        if (filename is null)
        {
            return null;
        }

        var utf8 = System.Text.Encoding.UTF8.GetBytes(name + "\0");
        fixed (byte* p = utf8)
        {
            var value = sqlite3_uri_parameter(filename, p);
            return value is null ? null : Marshal.PtrToStringUTF8((IntPtr)value);
        }
    }
}
