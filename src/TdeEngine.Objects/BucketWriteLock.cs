using System.Diagnostics;

namespace TdeEngine.Objects;

/// <summary>
/// The bucket's write lock: an exclusive lock on <c>.tde-bucket.lock</c> in the bucket folder
/// (FileShare.None, which .NET enforces with <c>flock</c> on Unix: across processes, and across
/// threads of one process too). Held while a name changes what it points at: the rename that
/// commits a PutObject, a DeleteObject, and a whole RewrapObject, so a re-wrap cannot put back an
/// object that a PutObject replaced or a DeleteObject removed meanwhile.
/// </summary>
internal sealed class BucketWriteLock : IDisposable
{
    public const string FileName = ".tde-bucket.lock";

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly FileStream _file;

    private BucketWriteLock(FileStream file) => _file = file;

    public static BucketWriteLock Take(string directory)
    {
        var path = Path.Combine(directory, FileName);
        var waited = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return new BucketWriteLock(new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, bufferSize: 1));
            }
            catch (IOException) when (File.Exists(path) && waited.Elapsed < Timeout)
            {
                // Held by another writer (this process or another): they hold it for a rename or a re-wrap only.
                Thread.Sleep(2);
            }
            catch (IOException e) when (File.Exists(path))
            {
                throw new TimeoutException($"The bucket in '{directory}' stayed locked by another writer for {Timeout.TotalSeconds:N0} s ({path}). Retry later.", e);
            }
        }
    }

    public void Dispose() => _file.Dispose();
}
