using System.Runtime.InteropServices;

namespace TdeEngine.Kms.Store;

/// <summary>
/// fsync of a directory, so that a file created, renamed or deleted in it stays so after a power
/// cut (.NET has no API for it: it refuses to open a directory as a file).
/// </summary>
public static partial class DirectoryFlush
{
    /// <summary>fsync of <paramref name="directory"/> (Linux and macOS; a no-op on Windows).</summary>
    public static void Flush(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return;   // Windows makes directory changes durable with the file's own flush
        }

        var fd = Open(directory, 0 /* O_RDONLY */);
        if (fd < 0)
        {
            throw new IOException($"Could not open the directory '{directory}' to flush it (errno {Marshal.GetLastPInvokeError()}).");
        }

        try
        {
            if (Fsync(fd) != 0)
            {
                throw new IOException($"Could not flush the directory '{directory}' (errno {Marshal.GetLastPInvokeError()}).");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
