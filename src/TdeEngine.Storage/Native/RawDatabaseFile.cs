using System.Text;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Storage.Native;

/// <summary>
/// The bytes of a database file, read and written through SQLite's own <c>unix</c> VFS instead of a
/// file descriptor of our own.
/// </summary>
/// <remarks>
/// POSIX drops every lock a process holds on a file when the process closes <em>any</em> descriptor
/// of that file. Opening and closing a <c>FileStream</c> on a database that a connection in the same
/// process has locked would silently release that connection's locks. SQLite's unix VFS knows this
/// and keeps a closed descriptor open until the file's last lock in the process is gone, so file
/// access beside open connections (status, verify, re-wrap) goes through it. The connection opened
/// here never reads the file as a database.
/// </remarks>
internal sealed unsafe class RawDatabaseFile : IDisposable
{
    private const int SQLITE_OPEN_READONLY = 0x1;
    private const int SQLITE_OPEN_READWRITE = 0x2;
    private const int SQLITE_SYNC_NORMAL = 0x2;

    private IntPtr _db;
    private readonly SqliteFile* _file;

    private RawDatabaseFile(IntPtr db, SqliteFile* file)
    {
        _db = db;
        _file = file;
    }

    public string Path { get; private init; } = "";

    /// <summary>Opens the file (it must exist) through the unix VFS.</summary>
    public static RawDatabaseFile Open(string path, bool writable)
    {
        if (!File.Exists(path))
        {
            throw TdeStorageException.NoDatabaseFile(path);
        }

        var name = Encoding.UTF8.GetBytes(path + "\0");
        IntPtr db;
        int rc;
        fixed (byte* n = name)
        fixed (byte* vfs = "unix\0"u8)
        {
            rc = SqliteNative.sqlite3_open_v2(n, &db, writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY, vfs);
        }

        SqliteFile* file = null;
        if (rc == SqliteNative.SQLITE_OK)
        {
            fixed (byte* main = "main\0"u8)
            {
                rc = SqliteNative.sqlite3_file_control(db, main, SqliteNative.SQLITE_FCNTL_FILE_POINTER, &file);
            }
        }

        if (rc != SqliteNative.SQLITE_OK || file is null || file->pMethods is null)
        {
            SqliteNative.sqlite3_close_v2(db);
            throw new TdeStorageException(TdeStorageException.Codes.NotTdeDatabase, $"'{path}' could not be opened (SQLite error {rc}).", path);
        }

        long length;
        rc = file->pMethods->xFileSize(file, &length);
        if (rc != SqliteNative.SQLITE_OK)
        {
            SqliteNative.sqlite3_close_v2(db);
            throw new IOException($"Could not measure '{path}' (SQLite I/O error {rc}).");
        }

        return new RawDatabaseFile(db, file) { Path = path, Length = length };
    }

    /// <summary>The file's length when it was opened (one <c>fstat</c>, not one per read).</summary>
    public long Length { get; private init; }

    /// <summary>
    /// Reads <paramref name="buffer"/>.Length bytes at <paramref name="offset"/> (past the end of the
    /// file, zeros); returns how many lie within <see cref="Length"/>, the length at open (a file
    /// that others write to can have grown since: see <see cref="CurrentLength"/>).
    /// </summary>
    public int Read(Span<byte> buffer, long offset)
    {
        var available = (int)Math.Clamp(Length - offset, 0, buffer.Length);
        fixed (byte* p = buffer)
        {
            var rc = _file->pMethods->xRead(_file, p, buffer.Length, offset);
            if (rc != SqliteNative.SQLITE_IOERR_SHORT_READ)
            {
                Check(rc, "read");
            }
        }

        return available;
    }

    public void Write(ReadOnlySpan<byte> data, long offset)
    {
        fixed (byte* p = data)
        {
            Check(_file->pMethods->xWrite(_file, p, data.Length, offset), "write");
        }
    }

    /// <summary>The file's length now (one <c>fstat</c>).</summary>
    public long CurrentLength()
    {
        long length;
        Check(_file->pMethods->xFileSize(_file, &length), "measure");
        return length;
    }

    /// <summary>fsync.</summary>
    public void Sync() => Check(_file->pMethods->xSync(_file, SQLITE_SYNC_NORMAL), "sync");

    public void Dispose()
    {
        if (_db != IntPtr.Zero)
        {
            SqliteNative.sqlite3_close_v2(_db);
            _db = IntPtr.Zero;
        }
    }

    private void Check(int rc, string what)
    {
        if (rc != SqliteNative.SQLITE_OK)
        {
            throw new IOException($"Could not {what} '{Path}' (SQLite I/O error {rc}).");
        }
    }
}
