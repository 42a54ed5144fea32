using System.Runtime.InteropServices;

namespace TdeEngine.Storage.Native;

/// <summary><c>sqlite3_file</c>: every file object starts with its methods.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct SqliteFile
{
    public SqliteIoMethods* pMethods;
}

/// <summary><c>sqlite3_io_methods</c>, versions 1–3.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct SqliteIoMethods
{
    public int iVersion;
    public delegate* unmanaged[Cdecl]<SqliteFile*, int> xClose;
    public delegate* unmanaged[Cdecl]<SqliteFile*, byte*, int, long, int> xRead;
    public delegate* unmanaged[Cdecl]<SqliteFile*, byte*, int, long, int> xWrite;
    public delegate* unmanaged[Cdecl]<SqliteFile*, long, int> xTruncate;
    public delegate* unmanaged[Cdecl]<SqliteFile*, int, int> xSync;
    public delegate* unmanaged[Cdecl]<SqliteFile*, long*, int> xFileSize;
    public delegate* unmanaged[Cdecl]<SqliteFile*, int, int> xLock;
    public delegate* unmanaged[Cdecl]<SqliteFile*, int, int> xUnlock;
    public delegate* unmanaged[Cdecl]<SqliteFile*, int*, int> xCheckReservedLock;
    public delegate* unmanaged[Cdecl]<SqliteFile*, int, void*, int> xFileControl;
    public delegate* unmanaged[Cdecl]<SqliteFile*, int> xSectorSize;
    public delegate* unmanaged[Cdecl]<SqliteFile*, int> xDeviceCharacteristics;
    public delegate* unmanaged[Cdecl]<SqliteFile*, int, int, int, void**, int> xShmMap;
    public delegate* unmanaged[Cdecl]<SqliteFile*, int, int, int, int> xShmLock;
    public delegate* unmanaged[Cdecl]<SqliteFile*, void> xShmBarrier;
    public delegate* unmanaged[Cdecl]<SqliteFile*, int, int> xShmUnmap;
    public delegate* unmanaged[Cdecl]<SqliteFile*, long, int, void**, int> xFetch;
    public delegate* unmanaged[Cdecl]<SqliteFile*, long, void*, int> xUnfetch;
}

/// <summary><c>sqlite3_vfs</c>, versions 1–3.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct SqliteVfs
{
    public int iVersion;
    public int szOsFile;
    public int mxPathname;
    public SqliteVfs* pNext;
    public byte* zName;
    public void* pAppData;
    public delegate* unmanaged[Cdecl]<SqliteVfs*, byte*, SqliteFile*, int, int*, int> xOpen;
    public delegate* unmanaged[Cdecl]<SqliteVfs*, byte*, int, int> xDelete;
    public delegate* unmanaged[Cdecl]<SqliteVfs*, byte*, int, int*, int> xAccess;
    public delegate* unmanaged[Cdecl]<SqliteVfs*, byte*, int, byte*, int> xFullPathname;
    public void* xDlOpen;
    public void* xDlError;
    public void* xDlSym;
    public void* xDlClose;
    public void* xRandomness;
    public void* xSleep;
    public void* xCurrentTime;
    public void* xGetLastError;
    public void* xCurrentTimeInt64;
    public void* xSetSystemCall;
    public void* xGetSystemCall;
    public void* xNextSystemCall;
}
