namespace TdeEngine.Server;

/// <summary>
/// One KMS server per audit trail: an exclusive lock on <c>audit/server.lock</c> (<c>flock</c>,
/// which .NET takes for <see cref="FileShare.None"/>; the kernel drops it when the process dies,
/// SIGKILL included). A second server on the same home would not see the first one's
/// SignatureNonces, so a request answered by one could be replayed to the other.
/// </summary>
internal sealed class ServerHomeLock : IDisposable
{
    private FileStream? _file;

    private ServerHomeLock(FileStream file) => _file = file;

    public static ServerHomeLock Acquire(string auditDirectory)
    {
        var path = Path.Combine(auditDirectory, "server.lock");
        try
        {
            return new ServerHomeLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
        }
        catch (IOException e) when (e is not (FileNotFoundException or DirectoryNotFoundException or PathTooLongException))
        {
            throw new InvalidOperationException(
                $"Another KMS server is already serving this home ('{path}' is locked). A second server would not know the " +
                "SignatureNonces the first one accepted, so requests could be replayed to it. Stop the other server, or give " +
                "this one its own TDE_HOME.", e);
        }
    }

    public void Dispose() => Interlocked.Exchange(ref _file, null)?.Dispose();
}
