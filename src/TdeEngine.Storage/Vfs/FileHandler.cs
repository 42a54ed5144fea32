using TdeEngine.Storage.Native;

namespace TdeEngine.Storage.Vfs;

/// <summary>
/// The managed side of one open file: by default it forwards every call to the wrapped file of the
/// default VFS. Subclasses seal what they write and open what they read.
/// </summary>
/// <remarks>
/// SQLite uses a file from one connection at a time, so a handler needs no locking of its own.
/// </remarks>
internal unsafe class FileHandler(SqliteFile* underlying, string? path)
{
    protected SqliteFile* Underlying { get; } = underlying;

    public string Path { get; } = path ?? "(temporary file)";

    protected SqliteIoMethods* Inner => Underlying->pMethods;

    public virtual int Read(byte* buffer, int amount, long offset) => Inner->xRead(Underlying, buffer, amount, offset);

    public virtual int Write(byte* buffer, int amount, long offset) => Inner->xWrite(Underlying, buffer, amount, offset);

    public virtual int Truncate(long size) => Inner->xTruncate(Underlying, size);

    public virtual int Sync(int flags) => Inner->xSync(Underlying, flags);

    public virtual int FileSize(long* size) => Inner->xFileSize(Underlying, size);

    public virtual int FileControl(int op, void* arg) => Inner->xFileControl(Underlying, op, arg);

    public virtual int DeviceCharacteristics() => Inner->xDeviceCharacteristics(Underlying) & ~SqliteNative.SQLITE_IOCAP_SUBPAGE_READ;

    public virtual int Lock(int level) => Inner->xLock(Underlying, level);

    public virtual int Unlock(int level) => Inner->xUnlock(Underlying, level);

    public int CheckReservedLock(int* result) => Inner->xCheckReservedLock(Underlying, result);

    public int SectorSize() => Inner->xSectorSize(Underlying);

    public virtual int ShmMap(int page, int pageSize, int extend, void** mapping) => Inner->xShmMap(Underlying, page, pageSize, extend, mapping);

    public virtual int ShmLock(int offset, int n, int flags) => Inner->xShmLock(Underlying, offset, n, flags);

    public void ShmBarrier() => Inner->xShmBarrier(Underlying);

    public virtual int ShmUnmap(int deleteFlag) => Inner->xShmUnmap(Underlying, deleteFlag);

    /// <summary>
    /// SQLite asks for a memory-mapped page. No page is ever handed out (the caller sets none); a
    /// handler may use the call to let the wrapped file map itself.
    /// </summary>
    public virtual int Fetch(long offset, int amount) => SqliteNative.SQLITE_OK;

    /// <summary>SQLite drops every mapping of the file (another connection changed it).</summary>
    public int Unmap()
    {
        Unmapped();
        return Inner is not null && Inner->iVersion >= 3 && Inner->xUnfetch is not null
            ? Inner->xUnfetch(Underlying, 0, null)
            : SqliteNative.SQLITE_OK;
    }

    /// <summary>Called when SQLite dropped the file's mappings.</summary>
    protected virtual void Unmapped()
    {
    }

    /// <summary>Closes the wrapped file and releases what the handler holds.</summary>
    public int Close()
    {
        try
        {
            return Inner is null ? SqliteNative.SQLITE_OK : Inner->xClose(Underlying);
        }
        finally
        {
            Release();
        }
    }

    protected virtual void Release()
    {
    }

    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes from the wrapped file. Returns the SQLite code.</summary>
    protected int ReadRaw(Span<byte> buffer, long offset)
    {
        fixed (byte* p = buffer)
        {
            return Inner->xRead(Underlying, p, buffer.Length, offset);
        }
    }

    protected int WriteRaw(ReadOnlySpan<byte> buffer, long offset)
    {
        fixed (byte* p = buffer)
        {
            return Inner->xWrite(Underlying, p, buffer.Length, offset);
        }
    }
}
