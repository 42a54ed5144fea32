using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Buffers;
using System.Collections.Concurrent;
using Microsoft.Win32.SafeHandles;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Audit;

/// <summary>The outcome of <see cref="AuditTrail.Verify"/>.</summary>
public sealed record AuditVerification(bool Intact, long EventsChecked, long CheckpointsChecked, long? FirstBadSequence, string? FirstBadEventId, string Message);

/// <summary>
/// The append-only audit trail: <c>$TDE_HOME/audit/trail.jsonl</c>, one ActionTrail event per line,
/// each carrying the SHA-256 of the one before, plus signed checkpoints (HMAC under a key wrapped by
/// the root key) in <c>checkpoints.jsonl</c>, so that editing, deleting, reordering or inserting
/// events, or cutting the tail, is detected by <see cref="Verify"/>.
/// </summary>
/// <remarks>
/// <see cref="Append"/> and <see cref="AppendAsync"/> complete only once the event is on disk (fsync).
/// One writer thread group-commits: one write and one fsync for everything queued meanwhile. Several
/// processes (server and CLI) append safely: each batch holds an exclusive lock on <c>trail.lock</c>.
/// </remarks>
public sealed class AuditTrail : IAuditSink, IDisposable
{
    private const string HashSuffixStart = ",\"hash\":\"";

    private readonly string _trail;
    private readonly string _checkpoints;
    private readonly string _lockFile;
    private readonly SecretBuffer _macKey;
    private readonly long _checkpointInterval;
    // Callers enqueue without a lock; the writer sleeps on _wake only when the queue is empty.
    private readonly ConcurrentQueue<(AuditEvent Event, byte[] Core, Completion Done)> _queue = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _writer;
    private int _writerSleeping;
    private volatile bool _closed;
    private (long Length, long Sequence, string Hash)? _tail;
    // The open trail and the batch buffer: used under _fileGate and the file lock only (the writer,
    // Checkpoint, Dispose).
    private readonly object _fileGate = new();
    private SafeFileHandle? _handle;
    private ArrayBufferWriter<byte> _lines = new(64 * 1024);

    private AuditTrail(string directory, SecretBuffer macKey, long checkpointInterval)
    {
        _trail = Path.Combine(directory, "trail.jsonl");
        _checkpoints = Path.Combine(directory, "checkpoints.jsonl");
        _lockFile = Path.Combine(directory, "trail.lock");
        _macKey = macKey;
        _checkpointInterval = checkpointInterval;
        // A dedicated thread with blocking waits: it must keep writing when the thread pool is busy
        // (a server full of requests waiting for their events is exactly when it is).
        _writer = new Thread(WriteLoop) { IsBackground = true, Name = "tde-audit-writer" };
        _writer.Start();
    }

    /// <summary>Opens the trail under <c>home/audit</c>, creating it (and its checkpoint key, wrapped by <paramref name="root"/>).</summary>
    public static AuditTrail Open(string home, IRootKeyProvider root, long checkpointInterval = 1000)
    {
        ArgumentNullException.ThrowIfNull(root);
        var directory = Path.Combine(home, "audit");
        Directory.CreateDirectory(directory);
        var keyFile = Path.Combine(directory, "checkpoint.key");
        var context = "TdeEngine/audit-checkpoint-key/v1"u8;
        if (!File.Exists(keyFile))
        {
            using var fresh = SecretBuffer.Random(32);
            var temp = keyFile + "." + Guid.NewGuid().ToString("N");
            File.WriteAllBytes(temp, root.Wrap(fresh.Span, context));
            try
            {
                File.Move(temp, keyFile, overwrite: false);
            }
            catch (IOException) when (File.Exists(keyFile))
            {
                File.Delete(temp);
            }
        }

        return new AuditTrail(directory, root.Unwrap(File.ReadAllBytes(keyFile), context), checkpointInterval);
    }

    /// <summary>The path of the trail file.</summary>
    public string TrailPath => _trail;

    /// <summary>Appends an event and returns once it is durable; returns the event as written (sequence and hashes set).</summary>
    public AuditEvent Append(AuditEvent auditEvent)
    {
        ArgumentNullException.ThrowIfNull(auditEvent);
        // Blocking callers wait on an event of their own, so they never depend on the thread pool.
        using var signal = new ManualResetEventSlim();
        var done = new Completion(signal, null);
        if (!Enqueue((auditEvent, AuditJson.Core(auditEvent), done)))
        {
            throw new ObjectDisposedException(nameof(AuditTrail));
        }

        signal.Wait();
        return done.Error is null ? done.Result! : throw done.Error;
    }

    /// <summary>
    /// Appends an event; the task completes once the event is durable. Events queued meanwhile by
    /// any caller share one write and one fsync (group commit). A failed write fails the task: the
    /// caller must not acknowledge the call.
    /// </summary>
    public Task<AuditEvent> AppendAsync(AuditEvent auditEvent)
    {
        ArgumentNullException.ThrowIfNull(auditEvent);
        // Continuations run inline where the task is completed: never on the writer thread, always
        // on the pool work items of CompleteOnPool, which each finish a share of a batch.
        var task = new TaskCompletionSource<AuditEvent>();
        if (!Enqueue((auditEvent, AuditJson.Core(auditEvent), new Completion(null, task))))
        {
            task.SetException(new ObjectDisposedException(nameof(AuditTrail)));
        }

        return task.Task;
    }

    private bool Enqueue((AuditEvent Event, byte[] Core, Completion Done) item)
    {
        if (_closed)
        {
            return false;
        }

        _queue.Enqueue(item);
        if (Volatile.Read(ref _writerSleeping) == 1 && Interlocked.Exchange(ref _writerSleeping, 0) == 1)
        {
            _wake.Release();
        }

        if (_closed)
        {
            // Disposed meanwhile: the writer may be gone, so nothing may stay queued unanswered.
            FailQueued();
        }

        return true;
    }

    private void FailQueued()
    {
        var failed = new List<(AuditEvent Event, byte[] Core, Completion Done)>();
        while (_queue.TryDequeue(out var item))
        {
            failed.Add(item);
        }

        CompleteOnPool(failed, null, new ObjectDisposedException(nameof(AuditTrail)));
    }

    // Hands a batch's answers to at most one pool work item per core (the writer goes back to
    // writing at once). Each work item completes its share, and the callers' continuations run
    // inline there, instead of one thread-pool hop per event.
    private static void CompleteOnPool(List<(AuditEvent Event, byte[] Core, Completion Done)> batch, List<AuditEvent>? written, Exception? error)
    {
        if (batch.Count == 0)
        {
            return;
        }

        // Blocking callers are woken here (a Set runs no continuation, and they may be pool threads
        // themselves); only task completions go to the pool.
        var pending = new List<(Completion Done, AuditEvent? Result)>(batch.Count);
        for (var i = 0; i < batch.Count; i++)
        {
            if (batch[i].Done.RunsContinuations)
            {
                pending.Add((batch[i].Done, written?[i]));
            }
            else
            {
                batch[i].Done.Complete(written?[i], error);
            }
        }

        if (pending.Count == 0)
        {
            return;
        }

        var answers = pending.ToArray();
        var shares = Math.Clamp(answers.Length / 4, 1, Environment.ProcessorCount);
        for (var share = 0; share < shares; share++)
        {
            var from = answers.Length * share / shares;
            var to = answers.Length * (share + 1) / shares;
            ThreadPool.UnsafeQueueUserWorkItem(static state =>
            {
                foreach (var (done, result) in state.Answers.AsSpan(state.From, state.To - state.From))
                {
                    done.Complete(result, state.Error);
                }
            }, (Answers: answers, From: from, To: to, Error: error), preferLocal: false);
        }
    }

    private void WriteLoop()
    {
        var batch = new List<(AuditEvent Event, byte[] Core, Completion Done)>();
        while (true)
        {
            batch.Clear();
            while (batch.Count < 4096 && _queue.TryDequeue(out var item))
            {
                batch.Add(item);
            }

            if (batch.Count == 0)
            {
                if (_closed && _queue.IsEmpty)
                {
                    return;
                }

                // Announce the sleep (a full fence), then look again: a caller either sees the flag and
                // releases the writer, or enqueued before the second look and is seen by it.
                Interlocked.Exchange(ref _writerSleeping, 1);
                if (_queue.IsEmpty && !_closed)
                {
                    _wake.Wait();
                }
                else if (Interlocked.Exchange(ref _writerSleeping, 0) == 0)
                {
                    // A caller saw the flag and released the semaphore meanwhile: consume that release.
                    _wake.Wait();
                }

                continue;
            }

            List<AuditEvent> written;
            try
            {
                written = WriteDurably(batch);
            }
            catch (Exception e)
            {
                CompleteOnPool(batch, null, new IOException("The audit event could not be written; the call was not acknowledged.", e));
                continue;
            }

            CompleteOnPool(batch, written, null);
        }
    }

    /// <summary>Writes a signed checkpoint of the current end of the trail.</summary>
    public void Checkpoint()
    {
        lock (_fileGate)
        {
            using var held = AcquireFileLock();
            var tail = ReadTail(TrailHandle(out var length), length);
            if (tail.Sequence > 0)
            {
                WriteCheckpoint(tail.Sequence, tail.Hash);
            }
        }
    }

    /// <summary>Recomputes the chain and the checkpoints, and names the first event that does not fit.</summary>
    public AuditVerification Verify()
    {
        var previous = AuditJson.GenesisHash;
        long expected = 1;
        var hashes = new Dictionary<long, string>();
        if (File.Exists(_trail))
        {
            foreach (var line in ReadLines(_trail))
            {
                AuditEvent e;
                try
                {
                    e = AuditJson.Parse(line);
                }
                catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
                {
                    return Bad(expected, null, hashes.Count, 0, $"The line after event {expected - 1} is not a valid audit event (edited or damaged).");
                }

                var suffix = line.LastIndexOf(HashSuffixStart, StringComparison.Ordinal);
                var recomputed = suffix < 0 ? "" : Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(line[..suffix] + "}")));
                if (recomputed != e.Hash)
                {
                    return Bad(e.EventSequence, e.EventId, hashes.Count, 0, $"Event {e.EventSequence} ({e.EventId}) was edited: its content does not match its hash.");
                }

                if (e.EventSequence != expected || e.PreviousHash != previous)
                {
                    return Bad(e.EventSequence, e.EventId, hashes.Count, 0,
                        $"The chain breaks at event {e.EventSequence} ({e.EventId}), expected event {expected}: an event before it was deleted, reordered or inserted.");
                }

                hashes[e.EventSequence] = e.Hash;
                previous = e.Hash;
                expected++;
            }
        }

        long checkpoints = 0;
        if (File.Exists(_checkpoints))
        {
            foreach (var line in ReadLines(_checkpoints))
            {
                using var document = JsonDocument.Parse(line);
                var r = document.RootElement;
                var sequence = r.GetProperty("sequence").GetInt64();
                var hash = r.GetProperty("hash").GetString()!;
                var time = r.GetProperty("time").GetString()!;
                if (!CryptographicOperations.FixedTimeEquals(Convert.FromHexString(r.GetProperty("mac").GetString()!), Mac(sequence, hash, time)))
                {
                    return Bad(sequence, null, hashes.Count, checkpoints, $"The checkpoint at event {sequence} has a bad signature: the checkpoint file was altered.");
                }

                if (!hashes.TryGetValue(sequence, out var actual))
                {
                    return Bad(sequence, null, hashes.Count, checkpoints,
                        $"A signed checkpoint covers event {sequence}, but the trail ends at event {expected - 1}: events were cut from the end.");
                }

                if (actual != hash)
                {
                    return Bad(sequence, null, hashes.Count, checkpoints, $"Event {sequence} differs from the signed checkpoint: the trail was rewritten.");
                }

                checkpoints++;
            }
        }

        return new AuditVerification(true, hashes.Count, checkpoints, null, null,
            $"The trail is intact: {hashes.Count} events, {checkpoints} signed checkpoints.");
    }

    /// <summary>Reads every event (in order).</summary>
    public IEnumerable<AuditEvent> ReadAll() => File.Exists(_trail) ? ReadLines(_trail).Select(AuditJson.Parse) : [];

    /// <summary>The raw JSON Lines of the trail (for export).</summary>
    public IEnumerable<string> ReadRawLines() => File.Exists(_trail) ? ReadLines(_trail) : [];

    /// <summary>Writes what is queued, stops the writer, and wipes the checkpoint key.</summary>
    public void Dispose()
    {
        _closed = true;
        if (Interlocked.Exchange(ref _writerSleeping, 0) == 1)
        {
            _wake.Release();
        }

        _writer.Join();
        FailQueued();
        lock (_fileGate)
        {
            CloseTrailHandle();
        }

        _macKey.Dispose();
    }

    // ---------------------------------------------------------------- internals

    private List<AuditEvent> WriteDurably(List<(AuditEvent Event, byte[] Core, Completion Done)> events)
    {
        lock (_fileGate)
        {
            return WriteDurablyLocked(events);
        }
    }

    private List<AuditEvent> WriteDurablyLocked(List<(AuditEvent Event, byte[] Core, Completion Done)> events)
    {
        using var held = AcquireFileLock();
        var handle = TrailHandle(out var offset);
        var (_, sequence, previous) = ReadTail(handle, offset);
        var written = new List<AuditEvent>(events.Count);
        var lines = _lines;
        lines.ResetWrittenCount();
        foreach (var (e, core, _) in events)
        {
            sequence++;
            var hash = AuditJson.Chain(core, sequence, previous, lines);
            written.Add(e with { EventSequence = sequence, PreviousHash = previous, Hash = hash });
            previous = hash;
        }

        // Under the lock the end of the file is ours: write there, then fsync before anyone is answered.
        RandomAccess.Write(handle, lines.WrittenSpan, offset);
        RandomAccess.FlushToDisk(handle);
        if (lines.Capacity > 1 << 20)
        {
            _lines = new ArrayBufferWriter<byte>(64 * 1024);   // a rare huge batch does not stay pinned in memory
        }

        _tail = (offset + lines.WrittenCount, sequence, previous);
        var before = sequence - events.Count;
        if (_checkpointInterval > 0 && sequence / _checkpointInterval > before / _checkpointInterval)
        {
            WriteCheckpoint(sequence, previous);
        }

        return written;
    }

    // The trail stays open between batches (an open and a close per batch cost more than the write).
    // Under the file lock, a path whose length differs from the open handle's means the file was
    // replaced or moved aside: reopen it, and read its tail again.
    private SafeFileHandle TrailHandle(out long length)
    {
        if (_handle is not null)
        {
            var onPath = new FileInfo(_trail);
            length = RandomAccess.GetLength(_handle);
            if (onPath.Exists && onPath.Length == length)
            {
                return _handle;
            }

            CloseTrailHandle();
        }

        _handle = File.OpenHandle(_trail, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        _tail = null;
        length = RandomAccess.GetLength(_handle);
        return _handle;
    }

    private void CloseTrailHandle()
    {
        _handle?.Dispose();
        _handle = null;
    }

    private (long Length, long Sequence, string Hash) ReadTail(SafeFileHandle handle, long length)
    {
        if (_tail is { } cached && cached.Length == length)
        {
            return cached;
        }

        if (length == 0)
        {
            return (0, 0, AuditJson.GenesisHash);
        }

        var window = (int)Math.Min(length, 1 << 20);
        var buffer = new byte[window];
        var read = 0;
        while (read < window)
        {
            var n = RandomAccess.Read(handle, buffer.AsSpan(read), length - window + read);
            if (n == 0)
            {
                throw new IOException($"The audit trail {_trail} shrank while its tail was read.");
            }

            read += n;
        }

        var text = Encoding.UTF8.GetString(buffer).TrimEnd('\n');
        var last = text[(text.LastIndexOf('\n') + 1)..];
        var e = AuditJson.Parse(last);
        var tail = (length, e.EventSequence, e.Hash);
        _tail = tail;
        return tail;
    }

    private void WriteCheckpoint(long sequence, string hash)
    {
        var time = DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
        var mac = Convert.ToHexStringLower(Mac(sequence, hash, time));
        var line = $"{{\"sequence\":{sequence.ToString(CultureInfo.InvariantCulture)},\"hash\":\"{hash}\",\"time\":\"{time}\",\"mac\":\"{mac}\"}}\n";
        using var stream = new FileStream(_checkpoints, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
        stream.Write(Encoding.UTF8.GetBytes(line));
        stream.Flush(flushToDisk: true);
    }

    private byte[] Mac(long sequence, string hash, string time) =>
        HMACSHA256.HashData(_macKey.Span, Encoding.UTF8.GetBytes($"TdeEngine-audit-checkpoint|{sequence.ToString(CultureInfo.InvariantCulture)}|{hash}|{time}"));

    // An exclusive advisory lock across processes (on Unix, FileShare.None takes flock(LOCK_EX)).
    private FileStream AcquireFileLock()
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            try
            {
                return new FileStream(_lockFile, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, bufferSize: 0);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(1);
            }
        }
    }

    private static IEnumerable<string> ReadLines(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        while (reader.ReadLine() is { } line)
        {
            if (line.Length > 0)
            {
                yield return line;
            }
        }
    }

    private static AuditVerification Bad(long sequence, string? eventId, long events, long checkpoints, string message) =>
        new(false, events, checkpoints, sequence, eventId, message);

    private sealed class Completion(ManualResetEventSlim? signal, TaskCompletionSource<AuditEvent>? task)
    {
        public bool RunsContinuations => task is not null;

        public AuditEvent? Result { get; private set; }

        public Exception? Error { get; private set; }

        public void Complete(AuditEvent? result, Exception? error)
        {
            Result = result;
            Error = error;
            if (task is not null)
            {
                if (error is null)
                {
                    task.SetResult(result!);
                }
                else
                {
                    task.SetException(error);
                }
            }

            signal?.Set();
        }
    }
}
