using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Disks.Files;

/// <summary>
/// How disk images are opened: attached (exclusive lock), created (exclusive, must not exist), or
/// read for <c>Inspect</c> (no lock at all).
/// </summary>
/// <remarks>
/// On Linux and macOS .NET turns <see cref="FileShare.None"/> into <c>flock(LOCK_EX | LOCK_NB)</c>,
/// which holds across processes and across separate opens in one process; any other share mode
/// takes <c>LOCK_SH</c>, which fails while a disk is attached. So <see cref="OpenForInspect"/> calls
/// <c>open(2)</c> itself and takes no lock.
/// </remarks>
internal static partial class DiskFile
{
    // The errno (Unix, EWOULDBLOCK) or HRESULT (Windows, ERROR_SHARING_VIOLATION) .NET reports when
    // the lock is held elsewhere.
    private const int EwouldblockLinux = 11;
    private const int EwouldblockMacOS = 35;
    private const int SharingViolationWindows = unchecked((int)0x80070020);

    /// <summary>Opens an existing image read/write under an exclusive lock; <see cref="TdeStorageException.Codes.DiskInUse"/> when it is held.</summary>
    public static SafeFileHandle OpenExclusive(string path)
    {
        ThrowIfNotAFile(path);
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (IsLockConflict(e))
        {
            throw InUse(path, e);
        }
        catch (IOException e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw NotFound(path, e);
        }
    }

    /// <summary>A missing path is <c>Tde.DiskNotFound</c>; a folder is <c>Tde.NotTdeDisk</c>.</summary>
    public static void ThrowIfNotAFile(string path)
    {
        if (Directory.Exists(path))
        {
            throw new TdeStorageException(TdeStorageException.Codes.NotTdeDisk, $"'{path}' is a folder, not a disk image.", path);
        }

        if (!File.Exists(path))
        {
            throw NotFound(path);
        }
    }

    /// <summary>
    /// What reading a header from something that is not a regular file gives (a pipe or a device:
    /// <c>pread</c> fails with ESPIPE or the like): <c>Tde.NotTdeDisk</c>.
    /// </summary>
    public static TdeStorageException NotAFile(string path, Exception inner) =>
        new(TdeStorageException.Codes.NotTdeDisk, $"'{path}' is not a disk image: its header cannot be read as a file's ({inner.Message}).", path, inner: inner);

    /// <summary>Refuses a folder for a new image (or a snapshot) that does not exist, before any KMS call.</summary>
    public static void ThrowIfFolderMissing(string fullPath)
    {
        var folder = System.IO.Path.GetDirectoryName(fullPath);
        if (folder is not null && !Directory.Exists(folder))
        {
            throw new TdeStorageException(TdeStorageException.Codes.InvalidParameter,
                $"The folder '{folder}' does not exist; create it first.", fullPath);
        }
    }

    /// <summary>Creates a new image read/write under an exclusive lock; refuses an existing path.</summary>
    public static SafeFileHandle CreateExclusive(string path)
    {
        ThrowIfExists(path);

        try
        {
            return File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (File.Exists(path) && e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            throw Exists(path, e);   // created by someone else between the check and the open
        }
    }

    /// <summary>Refuses a path that is already taken (a new image is never written over a file).</summary>
    public static void ThrowIfExists(string path)
    {
        if (File.Exists(path) || Directory.Exists(path))
        {
            throw Exists(path);
        }
    }

    /// <summary>Opens an image read-only without taking any lock, so it works while the disk is attached.</summary>
    public static SafeFileHandle OpenForInspect(string path)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }

        var full = System.IO.Path.GetFullPath(path);
        ThrowIfNotAFile(full);
        // O_NONBLOCK: opening a FIFO must not wait for a writer (its header read then fails: NotAFile).
        var flags = OperatingSystem.IsLinux() ? 0x80000 | 0x800 /* O_RDONLY | O_CLOEXEC | O_NONBLOCK */ : 0x1000000 | 0x4;
        var fd = Open(full, flags);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == 2 /* ENOENT */)
            {
                throw NotFound(path);
            }

            throw new IOException($"Could not open the disk image '{path}' to read its header (errno {errno}).");
        }

        return new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>The error for an image that is attached elsewhere.</summary>
    public static TdeStorageException InUse(string path, Exception? inner = null) =>
        new(TdeStorageException.Codes.DiskInUse,
            $"The disk image '{path}' is attached (opened) by another EncryptedDisk, in this or another process. Detach it (Dispose) first.",
            path, inner: inner);

    private static TdeStorageException NotFound(string path, Exception? inner = null) =>
        new(TdeStorageException.Codes.DiskNotFound, $"The disk image '{path}' does not exist. Check the path.", path, inner: inner);

    private static TdeStorageException Exists(string path, Exception? inner = null) =>
        new(TdeStorageException.Codes.InvalidParameter,
            $"The file '{path}' already exists; a new disk image is never written over a file. Choose another path or delete the file.",
            path, inner: inner);

    private static bool IsLockConflict(IOException e) =>
        e is not FileNotFoundException and not DirectoryNotFoundException and not PathTooLongException &&
        (OperatingSystem.IsWindows() ? e.HResult == SharingViolationWindows
            : e.HResult == (OperatingSystem.IsMacOS() ? EwouldblockMacOS : EwouldblockLinux));

    /// <summary>
    /// Moves <paramref name="source"/> to <paramref name="target"/> only if nothing is there, atomically:
    /// on Unix a hard link (which fails with EEXIST) then an unlink of the source, since .NET's
    /// <c>File.Move(overwrite: false)</c> checks first and then renames, which can replace a file
    /// created in between. <c>Tde.InvalidParameter</c> when the target exists.
    /// </summary>
    public static void MoveNoReplace(string source, string target)
    {
        if (OperatingSystem.IsWindows())
        {
            try
            {
                File.Move(source, target, overwrite: false);   // MoveFileEx without REPLACE_EXISTING: atomic there
            }
            catch (IOException e) when (File.Exists(target))
            {
                throw Exists(target, e);
            }

            return;
        }

        if (Link(source, target) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == 17 /* EEXIST */)
            {
                throw Exists(target);
            }

            throw new IOException($"Could not move '{source}' to '{target}' (link failed, errno {errno}).");
        }

        File.Delete(source);
    }

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Link(string oldPath, string newPath);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);
}
