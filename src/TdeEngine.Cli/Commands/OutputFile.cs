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
        if (!Directory.Exists(Path.GetDirectoryName(full)))
        {
            // Not "Could not find a part of the path '.../.FILE.tde-out-<guid>'": the user never named that file.
            throw new IOException($"The folder of '{full}' does not exist; create it first.");
        }

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
