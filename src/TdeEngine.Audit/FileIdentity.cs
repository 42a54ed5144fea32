using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace TdeEngine.Audit;

/// <summary>
/// Whether an open handle and a path are the same file (device and inode), and the handle's length,
/// from Linux <c>statx</c>, whose layout is the same on every architecture. Elsewhere, and where
/// <c>statx</c> is missing, the answer falls back to comparing lengths.
/// </summary>
internal static partial class FileIdentity
{
    private const int AtFdCwd = -100;
    private const int AtEmptyPath = 0x1000;
    private const uint StatxIno = 0x100;
    private const uint StatxSize = 0x200;
    private static bool s_statxMissing = !OperatingSystem.IsLinux();

    /// <summary>
    /// True when <paramref name="path"/> names the file <paramref name="handle"/> has open;
    /// <paramref name="length"/> is the open file's length either way.
    /// </summary>
    public static bool SameFile(SafeFileHandle handle, string path, out long length)
    {
        if (!s_statxMissing)
        {
            try
            {
                Span<byte> open = stackalloc byte[256];
                Span<byte> named = stackalloc byte[256];
                var fd = (int)handle.DangerousGetHandle();
                if (Statx(fd, "", AtEmptyPath, StatxIno | StatxSize, ref MemoryMarshal.GetReference(open)) != 0)
                {
                    throw new IOException($"statx of the open audit trail failed (errno {Marshal.GetLastPInvokeError()}).");
                }

                length = (long)BinaryPrimitives.ReadUInt64LittleEndian(open[40..]);
                if (Statx(AtFdCwd, path, 0, StatxIno, ref MemoryMarshal.GetReference(named)) != 0)
                {
                    return false;   // gone (moved aside as a segment) or unreadable: reopen by name
                }

                // stx_ino at 32, stx_dev_major/minor at 136/140.
                return open.Slice(32, 8).SequenceEqual(named.Slice(32, 8)) && open.Slice(136, 8).SequenceEqual(named.Slice(136, 8));
            }
            catch (EntryPointNotFoundException)
            {
                s_statxMissing = true;
            }
        }

        var onPath = new FileInfo(path);
        length = RandomAccess.GetLength(handle);
        return onPath.Exists && onPath.Length == length;
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Statx(int dirfd, string path, int flags, uint mask, ref byte buffer);
}
