namespace TdeEngine.Cli.Commands;

/// <summary>
/// Writes a command's <c>--out FILE</c>: into a new temporary file beside it, renamed over FILE
/// only once complete. A failure midway (a chunk that fails authentication, a disk that cannot be
/// read) leaves FILE as it was and removes only the temporary file, which this command created:
/// never a file someone else holds, and never partial plaintext.
/// </summary>
internal static class OutputFile
{
    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        var temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.tde-out-{Guid.NewGuid():N}");
        try
        {
            using (var destination = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(destination);
            }

            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            // Only the temporary file: after the move it no longer exists.
            File.Delete(temp);
        }
    }
}
