using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Buffers;
using System.Collections.Concurrent;
using Microsoft.Win32.SafeHandles;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Kms.Secrets;
using TdeEngine.Kms.Store;

namespace TdeEngine.Audit;

/// <summary>The outcome of <see cref="AuditTrail.Verify"/>.</summary>
public sealed record AuditVerification(bool Intact, long EventsChecked, long CheckpointsChecked, long? FirstBadSequence, string? FirstBadEventId, string Message);

/// <summary>The outcome of <see cref="AuditTrail.Prune"/>: the sealed segments removed and the last event they held (0 if none).</summary>
public sealed record AuditPruneResult(int SegmentsRemoved, long PrunedThroughSequence, string Message);

/// <summary>
/// The append-only audit trail: <c>$TDE_HOME/audit/trail.jsonl</c>, one ActionTrail event per line,
/// each carrying the SHA-256 of the one before, plus signed checkpoints (HMAC under a key wrapped by
/// the root key) in <c>checkpoints.jsonl</c>, so that editing, deleting, reordering or inserting
/// events, or cutting the tail, is detected by <see cref="Verify"/>.
/// </summary>
/// <remarks>
/// <para>Segments: when <c>trail.jsonl</c> passes the segment size it is sealed, renamed
/// <c>trail-&lt;first event, 12 digits&gt;.jsonl</c>, and a new <c>trail.jsonl</c> continues the same
/// chain (its first event carries the hash of the sealed segment's last). Reading, verifying and
/// exporting go through the sealed segments in order, then <c>trail.jsonl</c>. Old segments leave
/// only through <see cref="Prune"/>, which records a signed marker first, so a segment deleted by
/// hand is reported as missing events.</para>
/// <para><see cref="Append"/> and <see cref="AppendAsync"/> complete only once the event is on disk (fsync).
/// One writer thread group-commits: one write and one fsync for everything queued meanwhile. Several
/// processes (server and CLI) append safely: each batch holds an exclusive lock on <c>trail.lock</c>.</para>
/// </remarks>
public sealed class AuditTrail : IAuditSink, IDisposable
{
    private const string HashSuffixStart = ",\"hash\":\"";
    private const string SegmentPrefix = "trail-";

    /// <summary>The size at which <c>trail.jsonl</c> is sealed as a segment by default: 64 MiB.</summary>
    public const long DefaultSegmentBytes = 64L << 20;

    private readonly string _directory;
    private readonly string _trail;
    private readonly long _segmentBytes;
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

    private AuditTrail(string directory, SecretBuffer macKey, long checkpointInterval, long segmentBytes)
    {
        _directory = directory;
        _segmentBytes = segmentBytes;
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

    /// <summary>
    /// Opens the trail under <c>home/audit</c>, creating it (and its checkpoint key, wrapped by
    /// <paramref name="root"/>). <paramref name="segmentBytes"/>: the size at which the active file
    /// is sealed as a segment (0: never).
    /// </summary>
    public static AuditTrail Open(string home, IRootKeyProvider root, long checkpointInterval = 1000, long segmentBytes = DefaultSegmentBytes)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentOutOfRangeException.ThrowIfNegative(segmentBytes);
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

        return new AuditTrail(directory, root.Unwrap(File.ReadAllBytes(keyFile), context), checkpointInterval, segmentBytes);
    }

    /// <summary>The path of the active trail file (<c>trail.jsonl</c>).</summary>
    public string TrailPath => _trail;

    /// <summary>The files that hold the trail, in order: the sealed segments, oldest first, then the active file if it exists.</summary>
    public IReadOnlyList<string> Files
    {
        get
        {
            var files = Segments().Select(s => s.Path).ToList();
            if (File.Exists(_trail))
            {
                files.Add(_trail);
            }

            return files;
        }
    }

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

    /// <summary>Recomputes the chain across every file and checks the signed checkpoints, and names the first event that does not fit.</summary>
    public AuditVerification Verify()
    {
        // One consistent view, taken under the trail lock: the files and how far each reached, and
        // the signed records written by then (a checkpoint written later cannot cover an event the
        // view does not hold). The files are read afterwards, without holding up the writers.
        using var snapshot = TakeSnapshot();

        // The signed records first (they are few): checkpoints by sequence, and the latest prune marker.
        var checkpoints = new Dictionary<long, string>();
        (long Sequence, string Hash, string Time)? pruned = null;
        foreach (var line in snapshot.SignedLines)
        {
            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(line);
            }
            catch (JsonException)
            {
                return Bad(0, null, 0, 0, "A line of checkpoints.jsonl is not a signed record (edited or damaged).");
            }

            using var owned = document;
            var r = document.RootElement;
            var time = r.GetProperty("time").GetString()!;
            var mac = Convert.FromHexString(r.GetProperty("mac").GetString()!);
            if (r.TryGetProperty("prunedThrough", out var through))
            {
                var prunedHash = r.GetProperty("hash").GetString()!;
                if (!CryptographicOperations.FixedTimeEquals(mac, PruneMac(through.GetInt64(), prunedHash, time)))
                {
                    return Bad(through.GetInt64(), null, 0, 0, $"The prune record through event {through.GetInt64()} has a bad signature: the checkpoint file was altered.");
                }

                if (pruned is null || through.GetInt64() > pruned.Value.Sequence)
                {
                    pruned = (through.GetInt64(), prunedHash, time);
                }

                continue;
            }

            var sequence = r.GetProperty("sequence").GetInt64();
            var hash = r.GetProperty("hash").GetString()!;
            if (!CryptographicOperations.FixedTimeEquals(mac, Mac(sequence, hash, time)))
            {
                return Bad(sequence, null, 0, 0, $"The checkpoint at event {sequence} has a bad signature: the checkpoint file was altered.");
            }

            checkpoints[sequence] = hash;
        }

        var previous = pruned?.Hash ?? AuditJson.GenesisHash;
        var prunedThrough = pruned?.Sequence ?? 0;
        var expected = prunedThrough + 1;
        long events = 0;
        long matched = 0;
        foreach (var (file, stream, length) in snapshot.Files)
        {
            var firstInFile = true;
            foreach (var line in ReadLines(stream, length))
            {
                AuditEvent e;
                try
                {
                    e = AuditJson.Parse(line);
                }
                catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
                {
                    return Bad(expected, null, events, matched, $"The line after event {expected - 1} in {Path.GetFileName(file)} is not a valid audit event (edited or damaged).");
                }

                if (e.EventSequence <= prunedThrough)
                {
                    continue;   // left behind by an interrupted prune: already accounted for by its signed record
                }

                var suffix = line.LastIndexOf(HashSuffixStart, StringComparison.Ordinal);
                var recomputed = suffix < 0 ? "" : Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(line[..suffix] + "}")));
                if (recomputed != e.Hash)
                {
                    return Bad(e.EventSequence, e.EventId, events, matched, $"Event {e.EventSequence} ({e.EventId}) was edited: its content does not match its hash.");
                }

                if (firstInFile && e.EventSequence > expected)
                {
                    return Bad(e.EventSequence, e.EventId, events, matched,
                        $"Events {expected} to {e.EventSequence - 1} are missing before {Path.GetFileName(file)}: a trail segment was deleted or moved.");
                }

                if (e.EventSequence != expected || e.PreviousHash != previous)
                {
                    return Bad(e.EventSequence, e.EventId, events, matched,
                        $"The chain breaks at event {e.EventSequence} ({e.EventId}), expected event {expected}: an event before it was deleted, reordered or inserted.");
                }

                if (checkpoints.TryGetValue(e.EventSequence, out var signed))
                {
                    if (signed != e.Hash)
                    {
                        return Bad(e.EventSequence, e.EventId, events, matched, $"Event {e.EventSequence} differs from the signed checkpoint: the trail was rewritten.");
                    }

                    matched++;
                }

                firstInFile = false;
                previous = e.Hash;
                expected++;
                events++;
            }

            // The trail seals a segment only after a signed checkpoint of its last event: a file renamed
            // into a segment name by hand has none.
            if (file != _trail && !firstInFile && !checkpoints.ContainsKey(expected - 1))
            {
                return Bad(expected - 1, null, events, matched,
                    $"The segment {Path.GetFileName(file)} ends at event {expected - 1} without a signed checkpoint: it was not sealed by the trail (renamed or cut by hand).");
            }
        }

        // The first signed event the trail no longer reaches.
        if (checkpoints.Keys.Where(k => k >= expected).DefaultIfEmpty(0).Min() is var last && last >= expected)
        {
            return Bad(last, null, events, matched,
                $"A signed checkpoint covers event {last}, but the trail ends at event {expected - 1}: events were cut from the end.");
        }

        var where = snapshot.Files.Count > 1 ? $" in {snapshot.Files.Count} files" : "";
        var prunedNote = pruned is { } p ? $" Events 1 to {p.Sequence} were pruned ({p.Time})." : "";
        return new AuditVerification(true, events, matched, null, null,
            $"The trail is intact: {events} events{where}, {matched} signed checkpoints.{prunedNote}");
    }

    /// <summary>
    /// Removes the sealed segments whose last event is older than <paramref name="before"/>, oldest
    /// first. The trail must verify first (tampered events are not pruned away), and a signed prune
    /// record naming the last removed event is written before any file goes, so <see cref="Verify"/>
    /// starts after it and a segment removed any other way still reads as missing events.
    /// </summary>
    public AuditPruneResult Prune(DateTimeOffset before)
    {
        // Sealed segments never change, so a verification made before taking the lock still holds for them.
        var verification = Verify();
        if (!verification.Intact)
        {
            throw new InvalidOperationException($"The trail does not verify, so nothing was pruned: {verification.Message}");
        }

        lock (_fileGate)
        {
            using var held = AcquireFileLock();
            var already = PrunedThrough();
            var leftovers = new List<string>();
            var removable = new List<string>();
            long firstRemoved = 0;
            AuditEvent? lastRemoved = null;
            foreach (var (first, path) in Segments())
            {
                var last = LastEvent(path);
                if (last is not null && last.EventSequence <= already)
                {
                    leftovers.Add(path);   // an earlier prune was interrupted after its record: finish it
                    continue;
                }

                if (last is null || last.EventTime >= before)
                {
                    break;
                }

                firstRemoved = removable.Count == 0 ? first : firstRemoved;
                removable.Add(path);
                lastRemoved = last;
            }

            foreach (var path in leftovers)
            {
                File.Delete(path);
            }

            if (lastRemoved is null)
            {
                if (leftovers.Count > 0)
                {
                    DirectoryFlush.Flush(_directory);
                }

                return new AuditPruneResult(leftovers.Count, already, leftovers.Count > 0
                    ? $"Finished an interrupted prune ({leftovers.Count} segment(s) through event {already}); no other sealed segment ends before {before:O}."
                    : $"No sealed segment ends before {before:O}; nothing was pruned.");
            }

            // The signed record goes first, in one atomic rewrite that also drops the records it makes
            // moot; then the files. A crash in between leaves files that verification skips.
            RewriteSignedRecords(PruneLine(lastRemoved.EventSequence, lastRemoved.Hash), lastRemoved.EventSequence);
            foreach (var path in removable)
            {
                File.Delete(path);
            }

            DirectoryFlush.Flush(_directory);
            return new AuditPruneResult(removable.Count, lastRemoved.EventSequence,
                $"Pruned {removable.Count} segment(s): events {firstRemoved} to {lastRemoved.EventSequence}. The trail now starts at event {lastRemoved.EventSequence + 1}.");
        }
    }

    // The last event removed by pruning so far (0: none), from the newest prune record.
    private long PrunedThrough()
    {
        long through = 0;
        if (File.Exists(_checkpoints))
        {
            foreach (var line in ReadLines(_checkpoints))
            {
                using var document = JsonDocument.Parse(line);
                if (document.RootElement.TryGetProperty("prunedThrough", out var t))
                {
                    through = Math.Max(through, t.GetInt64());
                }
            }
        }

        return through;
    }

    // checkpoints.jsonl becomes: the new prune record, then the checkpoints after it (older
    // checkpoints and prune records cover only removed events). Written beside it and renamed over it.
    private void RewriteSignedRecords(string pruneLine, long prunedThrough)
    {
        var kept = new StringBuilder(pruneLine);
        if (File.Exists(_checkpoints))
        {
            foreach (var line in ReadLines(_checkpoints))
            {
                using var document = JsonDocument.Parse(line);
                if (document.RootElement.TryGetProperty("sequence", out var sequence) && sequence.GetInt64() > prunedThrough)
                {
                    kept.Append(line).Append('\n');
                }
            }
        }

        var temp = _checkpoints + "." + Guid.NewGuid().ToString("N");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                stream.Write(Encoding.UTF8.GetBytes(kept.ToString()));
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, _checkpoints, overwrite: true);
        }
        finally
        {
            File.Delete(temp);
        }

        DirectoryFlush.Flush(_directory);
    }

    /// <summary>Reads every event (in order, across segments).</summary>
    public IEnumerable<AuditEvent> ReadAll() => ReadRawLines().Select(AuditJson.Parse);

    /// <summary>The raw JSON Lines of the trail, across segments (for export), as they were when the enumeration started.</summary>
    public IEnumerable<string> ReadRawLines() => ReadRawLines(null, null);

    /// <summary>
    /// The raw lines of the files that may hold events from <paramref name="from"/> to
    /// <paramref name="to"/>: a sealed segment whose first and last events lie more than a minute
    /// outside the range is not read. Lines are not filtered by time (the caller does that).
    /// </summary>
    public IEnumerable<string> ReadRawLines(DateTimeOffset? from, DateTimeOffset? to)
    {
        // Event times are taken when each call ends, so appends are in time order to within the
        // time a caller waits to enqueue: a minute of slack never skips a segment holding a match.
        var slack = TimeSpan.FromMinutes(1);
        using var snapshot = TakeSnapshot();
        foreach (var (path, stream, length) in snapshot.Files)
        {
            if (path != _trail && (from is not null || to is not null) && length > 0)
            {
                var first = AuditJson.Parse(ReadLines(stream, length).First()).EventTime;
                var last = LastEvent(stream.SafeFileHandle, length, path).EventTime;
                if ((from is { } f && last < f - slack) || (to is { } t && first > t + slack))
                {
                    continue;
                }
            }

            foreach (var line in ReadLines(stream, length))
            {
                yield return line;
            }
        }
    }

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
        var rotate = _segmentBytes > 0 && offset + lines.WrittenCount >= _segmentBytes;
        if (rotate || (_checkpointInterval > 0 && sequence / _checkpointInterval > before / _checkpointInterval))
        {
            WriteCheckpoint(sequence, previous);
        }

        if (rotate)
        {
            SealSegment();
        }

        return written;
    }

    // Under the file lock: trail.jsonl (durable, and just checkpointed at its last event) becomes the
    // segment named by its first event; the next batch creates a new trail.jsonl that continues the
    // chain from the segment's last event (ReadTail of an empty file).
    private void SealSegment()
    {
        var first = AuditJson.Parse(ReadLines(_trail).First()).EventSequence;
        var segment = Path.Combine(_directory, SegmentPrefix + first.ToString("D12", CultureInfo.InvariantCulture) + ".jsonl");
        File.Move(_trail, segment, overwrite: false);
        CloseTrailHandle();
        DirectoryFlush.Flush(_directory);
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

        var created = !File.Exists(_trail);
        _handle = File.OpenHandle(_trail, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        _tail = null;
        length = RandomAccess.GetLength(_handle);
        if (created)
        {
            DirectoryFlush.Flush(_directory);   // the new file's name must be as durable as the events fsynced into it
        }

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

        // An empty trail.jsonl continues the chain of the newest sealed segment (none: a new chain).
        var e = length > 0 ? LastEvent(handle, length, _trail) : Segments().LastOrDefault() is { Path: not null } newest ? LastEvent(newest.Path) : null;
        var tail = e is null ? (length, 0L, AuditJson.GenesisHash) : (length, e.EventSequence, e.Hash);
        _tail = tail;
        return tail;
    }

    private static AuditEvent? LastEvent(string path)
    {
        using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        var length = RandomAccess.GetLength(handle);
        return length == 0 ? null : LastEvent(handle, length, path);
    }

    private static AuditEvent LastEvent(SafeFileHandle handle, long length, string path)
    {
        var window = (int)Math.Min(length, 1 << 20);
        var buffer = new byte[window];
        var read = 0;
        while (read < window)
        {
            var n = RandomAccess.Read(handle, buffer.AsSpan(read), length - window + read);
            if (n == 0)
            {
                throw new IOException($"The audit trail {path} shrank while its tail was read.");
            }

            read += n;
        }

        var text = Encoding.UTF8.GetString(buffer).TrimEnd('\n');
        return AuditJson.Parse(text[(text.LastIndexOf('\n') + 1)..]);
    }

    // The sealed segments, oldest first (by the first event in their name).
    private IEnumerable<(long First, string Path)> Segments() =>
        Directory.EnumerateFiles(_directory, SegmentPrefix + "*.jsonl")
            .Select(path => (Name: Path.GetFileNameWithoutExtension(path)[SegmentPrefix.Length..], Path: path))
            .Where(x => x.Name.Length is >= 12 and <= 18 && x.Name.All(char.IsAsciiDigit))   // at least 12 digits; more past 10^12 events
            .Select(x => (long.Parse(x.Name, CultureInfo.InvariantCulture), x.Path))
            .OrderBy(x => x.Item1);

    private void WriteCheckpoint(long sequence, string hash)
    {
        var time = Now();
        var mac = Convert.ToHexStringLower(Mac(sequence, hash, time));
        WriteSignedLine($"{{\"sequence\":{sequence.ToString(CultureInfo.InvariantCulture)},\"hash\":\"{hash}\",\"time\":\"{time}\",\"mac\":\"{mac}\"}}\n");
    }

    private string PruneLine(long through, string hash)
    {
        var time = Now();
        var mac = Convert.ToHexStringLower(PruneMac(through, hash, time));
        return $"{{\"prunedThrough\":{through.ToString(CultureInfo.InvariantCulture)},\"hash\":\"{hash}\",\"time\":\"{time}\",\"mac\":\"{mac}\"}}\n";
    }

    private static string Now() => DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    private void WriteSignedLine(string line)
    {
        var created = !File.Exists(_checkpoints);
        using (var stream = new FileStream(_checkpoints, FileMode.Append, FileAccess.Write, FileShare.ReadWrite))
        {
            stream.Write(Encoding.UTF8.GetBytes(line));
            stream.Flush(flushToDisk: true);
        }

        if (created)
        {
            DirectoryFlush.Flush(_directory);
        }
    }

    private byte[] Mac(long sequence, string hash, string time) =>
        HMACSHA256.HashData(_macKey.Span, Encoding.UTF8.GetBytes($"TdeEngine-audit-checkpoint|{sequence.ToString(CultureInfo.InvariantCulture)}|{hash}|{time}"));

    // A different domain than checkpoints, so neither record can be passed off as the other.
    private byte[] PruneMac(long through, string hash, string time) =>
        HMACSHA256.HashData(_macKey.Span, Encoding.UTF8.GetBytes($"TdeEngine-audit-prune|{through.ToString(CultureInfo.InvariantCulture)}|{hash}|{time}"));

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

    // Lines of the first `length` bytes of a file (a view taken under the lock: later appends are not read).
    private static IEnumerable<string> ReadLines(FileStream stream, long length)
    {
        var buffer = new byte[64 * 1024];
        var pending = new MemoryStream();
        long position = 0;
        while (position < length)
        {
            var n = RandomAccess.Read(stream.SafeFileHandle, buffer.AsSpan(0, (int)Math.Min(buffer.Length, length - position)), position);
            if (n == 0)
            {
                break;   // cut shorter meanwhile: what is left is read, and verification says what is missing
            }

            position += n;
            var start = 0;
            while (start < n)
            {
                var newline = Array.IndexOf(buffer, (byte)'\n', start, n - start);
                if (newline < 0)
                {
                    pending.Write(buffer, start, n - start);
                    break;
                }

                pending.Write(buffer, start, newline - start);
                start = newline + 1;
                if (pending.Length > 0)
                {
                    var line = Encoding.UTF8.GetString(pending.GetBuffer(), 0, (int)pending.Length);
                    pending.SetLength(0);
                    yield return line;
                }
            }
        }

        if (pending.Length > 0)
        {
            yield return Encoding.UTF8.GetString(pending.GetBuffer(), 0, (int)pending.Length);   // a last line without its newline
        }
    }

    // Under the trail lock: every file of the trail opened, with the length it had, and the signed records.
    private Snapshot TakeSnapshot()
    {
        var files = new List<(string Path, FileStream Stream, long Length)>();
        try
        {
            using var held = AcquireFileLock();
            foreach (var path in Segments().Select(x => x.Path).Append(_trail))
            {
                FileStream stream;
                try
                {
                    stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                }
                catch (FileNotFoundException)
                {
                    continue;   // no trail.jsonl yet (or right after a segment was sealed)
                }

                files.Add((path, stream, stream.Length));
            }

            var signed = File.Exists(_checkpoints) ? ReadLines(_checkpoints).ToList() : [];
            return new Snapshot(files, signed);
        }
        catch
        {
            foreach (var file in files)
            {
                file.Stream.Dispose();
            }

            throw;
        }
    }

    private sealed record Snapshot(List<(string Path, FileStream Stream, long Length)> Files, List<string> SignedLines) : IDisposable
    {
        public void Dispose()
        {
            foreach (var file in Files)
            {
                file.Stream.Dispose();
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
