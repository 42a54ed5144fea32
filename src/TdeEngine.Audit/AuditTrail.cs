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
    private const string SegmentPrefix = "trail-";

    /// <summary>The size at which <c>trail.jsonl</c> is sealed as a segment by default: 64 MiB.</summary>
    public const long DefaultSegmentBytes = 64L << 20;

    /// <summary>
    /// By default, while events are being appended, a signed checkpoint is written at least this
    /// often (besides every <c>checkpointInterval</c> events and when the trail is disposed).
    /// </summary>
    public static readonly TimeSpan DefaultCheckpointPeriod = TimeSpan.FromSeconds(5);

    // Trails whose checkpoint key is wrapped under the v2 context were created with chained signed
    // records and a genesis record: for them an empty checkpoints.jsonl is a deletion, not an old trail.
    private static ReadOnlySpan<byte> KeyContextV1 => "TdeEngine/audit-checkpoint-key/v1"u8;

    private static ReadOnlySpan<byte> KeyContextV2 => "TdeEngine/audit-checkpoint-key/v2"u8;

    private readonly string _directory;
    private readonly string _trail;
    private readonly long _segmentBytes;
    private readonly string _checkpoints;
    private readonly string _lockFile;
    private readonly SecretBuffer _macKey;
    private readonly long _checkpointInterval;
    private readonly bool _chainedSinceCreation;
    private readonly long _checkpointPeriodTicks;
    // The writer's bookkeeping for time-based and closing checkpoints (under _fileGate): the last event
    // this instance appended that no signed record of its own covers yet (0: none), and when it last signed.
    private long _unsignedThrough;
    private long _lastSignedAt = System.Diagnostics.Stopwatch.GetTimestamp();
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

    private AuditTrail(string directory, SecretBuffer macKey, bool chainedSinceCreation, long checkpointInterval, long segmentBytes, TimeSpan checkpointPeriod)
    {
        _chainedSinceCreation = chainedSinceCreation;
        _checkpointPeriodTicks = (long)(checkpointPeriod.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
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
    /// is sealed as a segment (0: never). Signed checkpoints are written every
    /// <paramref name="checkpointInterval"/> events (0: not by count), at least every
    /// <paramref name="checkpointPeriod"/> while events are appended (default
    /// <see cref="DefaultCheckpointPeriod"/>; <see cref="TimeSpan.Zero"/>: not by time), when a
    /// segment is sealed, and on <see cref="Dispose"/> if this instance appended since its last one.
    /// </summary>
    public static AuditTrail Open(string home, IRootKeyProvider root, long checkpointInterval = 1000, long segmentBytes = DefaultSegmentBytes, TimeSpan? checkpointPeriod = null)
    {
        ArgumentNullException.ThrowIfNull(root);
        ArgumentOutOfRangeException.ThrowIfNegative(segmentBytes);
        var period = checkpointPeriod ?? DefaultCheckpointPeriod;
        ArgumentOutOfRangeException.ThrowIfLessThan(period, TimeSpan.Zero);
        var directory = Path.Combine(home, "audit");
        Directory.CreateDirectory(directory);
        var keyFile = Path.Combine(directory, "checkpoint.key");
        if (!File.Exists(keyFile))
        {
            using var fresh = SecretBuffer.Random(32);
            var temp = keyFile + "." + Guid.NewGuid().ToString("N");
            File.WriteAllBytes(temp, root.Wrap(fresh.Span, KeyContextV2));
            OwnerOnly.Restrict(temp);
            try
            {
                File.Move(temp, keyFile, overwrite: false);
            }
            catch (IOException) when (File.Exists(keyFile))
            {
                File.Delete(temp);
            }
        }

        // The context the key was wrapped under says whether this trail was created with chained
        // records (v2) or before them (v1). It cannot be changed without the root key.
        var wrapped = File.ReadAllBytes(keyFile);
        SecretBuffer key;
        bool chained;
        try
        {
            key = root.Unwrap(wrapped, KeyContextV2);
            chained = true;
        }
        catch (CryptographicException)
        {
            key = root.Unwrap(wrapped, KeyContextV1);
            chained = false;
        }

        var trail = new AuditTrail(directory, key, chained, checkpointInterval, segmentBytes, period);
        try
        {
            trail.SignGenesis();
        }
        catch
        {
            trail.Dispose();
            throw;
        }

        return trail;
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
                var due = SigningDueIn();
                if (_queue.IsEmpty && !_closed && _wake.Wait(due))
                {
                    continue;   // released by a caller (who reset the flag)
                }

                if (Interlocked.Exchange(ref _writerSleeping, 0) == 0)
                {
                    // A caller saw the flag and released the semaphore meanwhile: consume that release.
                    _wake.Wait();
                }
                else if (!_closed && SigningDueIn() == TimeSpan.Zero)
                {
                    SignIfDue();   // idle with events no signed record covers yet, for a whole period
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

    /// <summary>
    /// Writes a signed checkpoint of the current end of the trail and returns its line (null when
    /// the trail holds no event), for keeping off-host: a later rollback of the trail to before it
    /// shows as a trail without that record.
    /// </summary>
    public string? Checkpoint()
    {
        lock (_fileGate)
        {
            using var held = AcquireFileLock();
            var tail = TailLocked();
            return tail.Sequence > 0 ? WriteCheckpoint(tail.Sequence, tail.Hash) : null;
        }
    }

    // How long the writer may sleep before this instance's unsigned events are due a checkpoint
    // (infinite when there are none or signing by time is off).
    private TimeSpan SigningDueIn()
    {
        if (_checkpointPeriodTicks <= 0 || Volatile.Read(ref _unsignedThrough) == 0)
        {
            return Timeout.InfiniteTimeSpan;
        }

        var left = Volatile.Read(ref _lastSignedAt) + _checkpointPeriodTicks - System.Diagnostics.Stopwatch.GetTimestamp();
        return left <= 0 ? TimeSpan.Zero : TimeSpan.FromSeconds((double)left / System.Diagnostics.Stopwatch.Frequency);
    }

    // On the writer thread when idle: a checkpoint of the end of the trail. A failure (a full disk)
    // is retried a period later; the events themselves are already durable.
    private void SignIfDue()
    {
        try
        {
            Checkpoint();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Volatile.Write(ref _lastSignedAt, System.Diagnostics.Stopwatch.GetTimestamp());
        }
    }

    // At Open, for a trail created with chained records: the first record (index 0, event 0) is
    // signed before any event can be appended, so a trail of this kind without it was emptied.
    private void SignGenesis()
    {
        if (!_chainedSinceCreation)
        {
            return;
        }

        lock (_fileGate)
        {
            using var held = AcquireFileLock();
            if (!HasSignedRecords() && TailLocked().Sequence == 0)
            {
                WriteCheckpoint(0, AuditJson.GenesisHash);
            }
        }
    }

    /// <summary>
    /// Recomputes the chain across every file and checks the signed records, and names the first
    /// event (or signed record) that does not fit.
    /// </summary>
    /// <remarks>
    /// Every line must be byte for byte the line the trail wrote for its event (nothing added
    /// before, inside or after it), sequences run from 1 (or from just after a signed prune record)
    /// without a gap, and only whole sealed segments that a signed prune record covers are skipped.
    /// Bytes after the last newline of <c>trail.jsonl</c> are the unfinished end of a write that was
    /// never acknowledged: they are reported, not taken for tampering.
    /// </remarks>
    public AuditVerification Verify()
    {
        // One consistent view, taken under the trail lock: the files and how far each reached, and
        // the signed records written by then (a checkpoint written later cannot cover an event the
        // view does not hold). The files are read afterwards, without holding up the writers.
        using var snapshot = TakeSnapshot();
        var signed = CheckSignedRecords(snapshot.SignedLines);
        if (signed.Failure is { } failure)
        {
            return Bad(signed.FailureSequence, null, 0, 0, failure);
        }

        var checkpoints = signed.Checkpoints;
        var pruned = signed.Pruned;
        var previous = pruned?.Hash ?? AuditJson.GenesisHash;
        var prunedThrough = pruned?.Sequence ?? 0;
        var expected = prunedThrough + 1;
        long events = 0;
        long matched = 0;
        var lastSigned = prunedThrough;
        string? torn = null;
        foreach (var (file, stream, length) in snapshot.Files)
        {
            if (IsPrunedLeftover(file, stream.SafeFileHandle, length, prunedThrough))
            {
                continue;   // a whole segment left behind by an interrupted prune: its signed record accounts for it
            }

            var name = Path.GetFileName(file);
            var firstInFile = true;
            foreach (var (line, terminated) in ReadByteLines(stream, length))
            {
                if (!terminated)
                {
                    if (file == _trail)
                    {
                        torn = $" trail.jsonl ends with an unfinished last line ({line.Length} bytes after event {expected - 1}), never acknowledged: the next append sets it aside as trail.torn-{length - line.Length}.";
                        break;
                    }

                    return Bad(expected, null, events, matched, $"The segment {name} ends with an unfinished line after event {expected - 1}: it was cut or edited by hand.");
                }

                var e = AuditJson.ParseCanonical(line);
                if (e is null)
                {
                    var (claimed, id) = AuditJson.Claimed(line);
                    if (claimed is null && id is null)
                    {
                        return Bad(expected, null, events, matched, $"The line after event {expected - 1} in {name} is not a valid audit event (edited or damaged).");
                    }

                    var n = claimed ?? expected;
                    return Bad(n, id, events, matched, $"Event {n} ({id}) was edited: its content does not match its hash.");
                }

                if (firstInFile && e.EventSequence > expected)
                {
                    return Bad(e.EventSequence, e.EventId, events, matched,
                        $"Events {expected} to {e.EventSequence - 1} are missing before {name}: a trail segment was deleted or moved.");
                }

                if (e.EventSequence != expected || e.PreviousHash != previous)
                {
                    return Bad(e.EventSequence, e.EventId, events, matched,
                        $"The chain breaks at event {e.EventSequence} ({e.EventId}), expected event {expected}: an event before it was deleted, reordered or inserted.");
                }

                if (checkpoints.TryGetValue(e.EventSequence, out var hash))
                {
                    if (hash != e.Hash)
                    {
                        return Bad(e.EventSequence, e.EventId, events, matched, $"Event {e.EventSequence} differs from the signed checkpoint: the trail was rewritten.");
                    }

                    matched++;
                    lastSigned = e.EventSequence;
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
                    $"The segment {name} ends at event {expected - 1} without a signed checkpoint: it was not sealed by the trail (renamed or cut by hand).");
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
        var unsigned = expected - 1 - lastSigned;
        var unsignedNote = unsigned > 0
            ? $" The last {unsigned} events are not yet covered by a signed checkpoint (normal while a writer is running, or after a crash)."
            : "";
        var asideNote = Directory.EnumerateFiles(_directory, "*.torn-*").Count() is var aside and > 0
            ? $" {aside} unfinished write(s) were set aside earlier (audit/*.torn-*)."
            : "";
        var tornRecord = snapshot.SignedTorn ? " checkpoints.jsonl ends with an unfinished record, never completed: the next checkpoint sets it aside." : "";
        return new AuditVerification(true, events, matched, null, null,
            $"The trail is intact: {events} events{where}, {matched} signed checkpoint{(matched == 1 ? "" : "s")}.{prunedNote}{unsignedNote}{torn}{tornRecord}{asideNote}");
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
            // Records signed since the verification are checked again before they are signed anew.
            var (lines, _) = ReadSignedLines();
            var signed = CheckSignedRecords(lines);
            if (signed.Failure is { } failure)
            {
                throw new InvalidOperationException($"The trail does not verify, so nothing was pruned: {failure}");
            }

            var already = signed.Pruned?.Sequence ?? 0;
            var leftovers = new List<string>();
            var removable = new List<string>();
            long firstRemoved = 0;
            AuditEvent? lastRemoved = null;
            foreach (var (first, path) in Segments())
            {
                using (var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
                {
                    if (IsPrunedLeftover(path, handle, RandomAccess.GetLength(handle), already))
                    {
                        leftovers.Add(path);   // an earlier prune was interrupted after its record: finish it
                        continue;
                    }
                }

                var last = LastEvent(path);
                if (last is null || last.EventTime >= before)
                {
                    break;
                }

                firstRemoved = removable.Count == 0 ? first : firstRemoved;
                removable.Add(path);
                lastRemoved = last;
            }

            // The newest segment stays when trail.jsonl holds no event yet: it holds the end of the
            // chain, which the next event continues from. (Removing it made the next event start a
            // new chain at 1, which the prune record then hid.)
            var segments = Segments().ToList();
            if (removable.Count > 0 && removable[^1] == segments[^1].Path && !TrailHasEvents())
            {
                removable.RemoveAt(removable.Count - 1);
                lastRemoved = removable.Count == 0 ? null : LastEvent(removable[^1]);
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
            RewriteSignedRecords(signed, lastRemoved.EventSequence, lastRemoved.Hash);
            foreach (var path in removable)
            {
                File.Delete(path);
            }

            DirectoryFlush.Flush(_directory);
            return new AuditPruneResult(removable.Count, lastRemoved.EventSequence,
                $"Pruned {removable.Count} segment(s): events {firstRemoved} to {lastRemoved.EventSequence}. The trail now starts at event {lastRemoved.EventSequence + 1}.");
        }
    }

    // A sealed segment that an interrupted prune left behind: named by an event its signed prune
    // record covers, and ending (complete) at such an event. Only whole files qualify: an event at or
    // below the prune point anywhere else is read, and breaks the chain.
    private bool IsPrunedLeftover(string path, SafeFileHandle handle, long length, long prunedThrough)
    {
        if (prunedThrough <= 0 || path == _trail || length == 0 || SegmentFirst(path) is not { } first || first > prunedThrough)
        {
            return false;
        }

        var (last, _) = AuditJson.Claimed(LastLine(handle, length));
        return last is { } sequence && sequence >= first && sequence <= prunedThrough;
    }

    // checkpoints.jsonl becomes: a prune record (a new start of the chain of signed records), then
    // the checkpoints after it, signed again in the chain (older checkpoints and prune records cover
    // only removed events). Written beside it and renamed over it.
    private void RewriteSignedRecords(SignedRecords signed, long prunedThrough, string hash)
    {
        var index = (signed.LastIndex ?? -1) + 1;
        var time = Now();
        var mac = Convert.ToHexStringLower(ChainMac(prune: true, index, "", prunedThrough, hash, time));
        var kept = new StringBuilder(RecordLine(prune: true, prunedThrough, hash, time, index, mac));
        foreach (var record in signed.Records)
        {
            if (!record.Prune && record.Sequence > prunedThrough)
            {
                var previousMac = mac;
                index++;
                mac = Convert.ToHexStringLower(ChainMac(prune: false, index, previousMac, record.Sequence, record.Hash, record.Time));
                kept.Append(RecordLine(prune: false, record.Sequence, record.Hash, record.Time, index, mac));
            }
        }

        var temp = _checkpoints + "." + Guid.NewGuid().ToString("N");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                OwnerOnly.Restrict(temp);
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

    // The times of a sealed segment's first and last events; null when either line does not parse
    // (damaged: `verify` reports it), and then the segment is read in full rather than skipped, so
    // a damaged line neither hides a segment's events from a lookup nor stops a server's start.
    private static (DateTimeOffset First, DateTimeOffset Last)? SegmentTimes(FileStream stream, long length)
    {
        try
        {
            return (AuditJson.Parse(ReadLines(stream, length).First()).EventTime,
                AuditJson.Parse(Encoding.UTF8.GetString(LastLine(stream.SafeFileHandle, length))).EventTime);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or ArgumentException)
        {
            return null;
        }
    }

    /// <summary>Reads every event (in order, across segments).</summary>
    public IEnumerable<AuditEvent> ReadAll() => ReadRawLines().Select(AuditJson.Parse);

    /// <summary>The raw JSON Lines of the trail, across segments (for export), as they were when the enumeration started.</summary>
    public IEnumerable<string> ReadRawLines() => ReadRawLines(null, null);

    /// <summary>
    /// The raw lines of the files that may hold events from <paramref name="from"/> to
    /// <paramref name="to"/>: a sealed segment whose first and last events lie more than a minute
    /// outside the range is not read. Lines are not filtered by time (the caller does that), nor
    /// verified (<see cref="Verify"/> does that). Like <see cref="Verify"/>, this skips only whole
    /// segments a signed prune record covers, and not the unfinished end of <c>trail.jsonl</c>.
    /// </summary>
    public IEnumerable<string> ReadRawLines(DateTimeOffset? from, DateTimeOffset? to)
    {
        // Event times are taken when each call ends, so appends are in time order to within the
        // time a caller waits to enqueue: a minute of slack never skips a segment holding a match.
        var slack = TimeSpan.FromMinutes(1);
        using var snapshot = TakeSnapshot();
        var prunedThrough = CheckSignedRecords(snapshot.SignedLines) is { Failure: null, Pruned: { } pruned } ? pruned.Sequence : 0;
        foreach (var (path, stream, length) in snapshot.Files)
        {
            if (IsPrunedLeftover(path, stream.SafeFileHandle, length, prunedThrough))
            {
                continue;
            }

            if (path != _trail && (from is not null || to is not null) && length > 0 &&
                SegmentTimes(stream, length) is var (first, last) &&
                ((from is { } f && last < f - slack) || (to is { } t && first > t + slack)))
            {
                continue;
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
            // A CLI command or a stopping server signs what it appended, so a cut of those events is
            // detected. If that fails (a full disk), the events are still durable, only unsigned, as
            // after a crash: Dispose does not throw for it.
            if (_unsignedThrough != 0)
            {
                try
                {
                    using var held = AcquireFileLock();
                    var tail = TailLocked();
                    if (tail.Sequence > 0)
                    {
                        WriteCheckpoint(tail.Sequence, tail.Hash);
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                }
            }

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
        var (handle, offset, sequence, previous) = TailLocked();
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
        Volatile.Write(ref _unsignedThrough, sequence);
        var before = sequence - events.Count;
        var rotate = _segmentBytes > 0 && offset + lines.WrittenCount >= _segmentBytes;
        if (rotate || (_checkpointInterval > 0 && sequence / _checkpointInterval > before / _checkpointInterval) || SigningDueIn() == TimeSpan.Zero)
        {
            try
            {
                WriteCheckpoint(sequence, previous);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The events are durable and chained: their callers are answered. Only the signature
                // is missing (verify reports the unsigned tail); the next due checkpoint tries again.
                // A segment is sealed only right after a checkpoint of its last event, so not now.
                Volatile.Write(ref _lastSignedAt, System.Diagnostics.Stopwatch.GetTimestamp());
                rotate = false;
            }
        }

        if (rotate)
        {
            SealSegment();
        }

        return written;
    }

    private bool TrailHasEvents()
    {
        var info = new FileInfo(_trail);
        return info.Exists && info.Length > 0;
    }

    // Under the file lock: trail.jsonl (durable, and just checkpointed at its last event) becomes the
    // segment named by its first event; the next batch creates a new trail.jsonl that continues the
    // chain from the segment's last event (ReadTail of an empty file).
    private void SealSegment()
    {
        long first;
        using (var stream = new FileStream(_trail, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
        {
            first = AuditJson.Parse(ReadLines(stream, stream.Length).First()).EventSequence;
        }

        var segment = Path.Combine(_directory, SegmentPrefix + first.ToString("D12", CultureInfo.InvariantCulture) + ".jsonl");
        File.Move(_trail, segment, overwrite: false);
        CloseTrailHandle();
        DirectoryFlush.Flush(_directory);
    }

    // The trail stays open between batches (an open and a close per batch cost more than the write).
    // Under the file lock, a path that no longer names the open file (another inode, or on other
    // systems another length) means the file was replaced or moved aside: reopen it, and read its
    // tail again.
    private SafeFileHandle TrailHandle(out long length)
    {
        if (_handle is not null)
        {
            // Compared by inode where the OS says (Linux): another process may have sealed the file
            // this handle has open and started a new trail.jsonl that happens to have its length.
            if (FileIdentity.SameFile(_handle, _trail, out length))
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
            OwnerOnly.Restrict(_trail);
            DirectoryFlush.Flush(_directory);   // the new file's name must be as durable as the events fsynced into it
        }

        return _handle;
    }

    private void CloseTrailHandle()
    {
        _handle?.Dispose();
        _handle = null;
    }

    // Under the file lock: the open trail, its length, and the event the next one chains to. Bytes
    // after the last newline are the unfinished end of a write that crashed or failed before its
    // fsync, so no caller was answered for them: they are moved aside, never chained onto.
    private (SafeFileHandle Handle, long Length, long Sequence, string Hash) TailLocked()
    {
        var handle = TrailHandle(out var length);
        if (length > 0 && !(_tail is { } cached && cached.Length == length))
        {
            var complete = SetAsideTornTail(handle, length, "trail");
            if (complete != length)
            {
                _tail = null;
                length = complete;
            }
        }

        var (_, sequence, hash) = ReadTail(handle, length);
        return (handle, length, sequence, hash);
    }

    // If the file does not end with a newline: copies the bytes after its last newline to
    // audit/<name>.torn-<offset> (durably), then truncates the file there. Returns the new length.
    private long SetAsideTornTail(SafeFileHandle handle, long length, string name)
    {
        var start = CompleteLength(handle, length);
        if (start == length)
        {
            return length;
        }

        var aside = Path.Combine(_directory, $"{name}.torn-{start.ToString(CultureInfo.InvariantCulture)}");
        for (var n = 1; File.Exists(aside); n++)
        {
            aside = Path.Combine(_directory, $"{name}.torn-{start.ToString(CultureInfo.InvariantCulture)}-{n.ToString(CultureInfo.InvariantCulture)}");
        }

        using (var copy = new FileStream(aside, FileMode.CreateNew, FileAccess.Write, FileShare.None))
        {
            OwnerOnly.Restrict(aside);
            var buffer = new byte[64 * 1024];
            for (var at = start; at < length;)
            {
                var n = RandomAccess.Read(handle, buffer.AsSpan(0, (int)Math.Min(buffer.Length, length - at)), at);
                if (n == 0)
                {
                    break;
                }

                copy.Write(buffer, 0, n);
                at += n;
            }

            copy.Flush(flushToDisk: true);
        }

        DirectoryFlush.Flush(_directory);
        RandomAccess.SetLength(handle, start);
        RandomAccess.FlushToDisk(handle);
        return start;
    }

    // The length of the file up to and including its last newline (0 if it has none).
    private static long CompleteLength(SafeFileHandle handle, long length)
    {
        var buffer = new byte[64 * 1024];
        var end = length;
        while (end > 0)
        {
            var size = (int)Math.Min(buffer.Length, end);
            var read = 0;
            while (read < size)
            {
                var n = RandomAccess.Read(handle, buffer.AsSpan(read, size - read), end - size + read);
                if (n == 0)
                {
                    throw new IOException("An audit file shrank while its end was read.");
                }

                read += n;
            }

            var newline = buffer.AsSpan(0, size).LastIndexOf((byte)'\n');
            if (newline >= 0)
            {
                return end - size + newline + 1;
            }

            end -= size;
        }

        return 0;
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

    private static AuditEvent LastEvent(SafeFileHandle handle, long length, string path) =>
        LastLine(handle, length) is { Length: > 0 } line
            ? AuditJson.Parse(Encoding.UTF8.GetString(line))
            : throw new InvalidDataException($"The audit trail {path} holds no complete line.");

    // The sealed segments, oldest first (by the first event in their name).
    private IEnumerable<(long First, string Path)> Segments() =>
        Directory.EnumerateFiles(_directory, SegmentPrefix + "*.jsonl")
            .Select(path => (Name: Path.GetFileNameWithoutExtension(path)[SegmentPrefix.Length..], Path: path))
            .Where(x => x.Name.Length is >= 12 and <= 18 && x.Name.All(char.IsAsciiDigit))   // at least 12 digits; more past 10^12 events
            .Select(x => (long.Parse(x.Name, CultureInfo.InvariantCulture), x.Path))
            .OrderBy(x => x.Item1);

    // Under the file lock: appends a checkpoint to the chain of signed records. A record is
    // {"sequence","hash","time","index","mac"}; its MAC covers the index and the MAC of the record
    // before it, so records can only be dropped from the end, never from the middle or the start.
    private string WriteCheckpoint(long sequence, string hash)
    {
        string line;
        var created = !File.Exists(_checkpoints);
        using (var stream = new FileStream(_checkpoints, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete))
        {
            if (created)
            {
                OwnerOnly.Restrict(_checkpoints);
            }

            var handle = stream.SafeFileHandle;
            var length = SetAsideTornTail(handle, RandomAccess.GetLength(handle), "checkpoints");
            var last = length == 0 ? null : ParseRecord(LastLine(handle, length));
            var (index, previousMac) = last is { Index: { } i } ? (i + 1, last.Mac) : (0L, "");
            var time = Now();
            var mac = Convert.ToHexStringLower(ChainMac(prune: false, index, previousMac, sequence, hash, time));
            line = RecordLine(prune: false, sequence, hash, time, index, mac);
            RandomAccess.Write(handle, Encoding.UTF8.GetBytes(line), length);
            RandomAccess.FlushToDisk(handle);
        }

        if (created)
        {
            DirectoryFlush.Flush(_directory);
        }

        Volatile.Write(ref _unsignedThrough, 0);
        Volatile.Write(ref _lastSignedAt, System.Diagnostics.Stopwatch.GetTimestamp());
        return line.TrimEnd('\n');
    }

    private static string RecordLine(bool prune, long sequence, string hash, string time, long index, string mac) =>
        string.Create(CultureInfo.InvariantCulture,
            $"{{\"{(prune ? "prunedThrough" : "sequence")}\":{sequence},\"hash\":\"{hash}\",\"time\":\"{time}\",\"index\":{index},\"mac\":\"{mac}\"}}\n");

    private static string Now() => DateTimeOffset.UtcNow.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    private bool HasSignedRecords() => File.Exists(_checkpoints) && ReadSignedLines().Lines.Count > 0;

    // Records from before chaining (no "index"): verified as they always were.
    private byte[] Mac(long sequence, string hash, string time) =>
        HMACSHA256.HashData(_macKey.Span, Encoding.UTF8.GetBytes($"TdeEngine-audit-checkpoint|{sequence.ToString(CultureInfo.InvariantCulture)}|{hash}|{time}"));

    // A different domain than checkpoints, so neither record can be passed off as the other.
    private byte[] PruneMac(long through, string hash, string time) =>
        HMACSHA256.HashData(_macKey.Span, Encoding.UTF8.GetBytes($"TdeEngine-audit-prune|{through.ToString(CultureInfo.InvariantCulture)}|{hash}|{time}"));

    // Chained records: the domain, the record's index, the previous record's MAC ("" for the first
    // record, and for a prune record, which starts the rewritten file), then the fields.
    private byte[] ChainMac(bool prune, long index, string previousMac, long sequence, string hash, string time) =>
        HMACSHA256.HashData(_macKey.Span, Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
            $"TdeEngine-audit-{(prune ? "prune" : "checkpoint")}/v2|{index}|{previousMac}|{sequence}|{hash}|{time}")));

    /// <summary>One line of <c>checkpoints.jsonl</c>, as read (not yet checked).</summary>
    private sealed record SignedRecord(bool Prune, long Sequence, string Hash, string Time, long? Index, string Mac);

    /// <summary>The signed records, checked: the checkpoints by sequence, the newest prune record, where the chain ends; or the first failure.</summary>
    private sealed record SignedRecords(List<SignedRecord> Records, Dictionary<long, string> Checkpoints, SignedRecord? Pruned, long? LastIndex, string? Failure, long FailureSequence);

    // Null for anything but {"sequence"|"prunedThrough": integer, "hash": 64 hex, "time": string, ["index": integer,] "mac": 64 hex}.
    private static SignedRecord? ParseRecord(ReadOnlySpan<byte> line)
    {
        try
        {
            using var document = JsonDocument.Parse(line.ToArray(), AuditJson.Strict);
            var r = document.RootElement;
            if (r.ValueKind != JsonValueKind.Object)
            {
                return null;
            }

            var prune = r.TryGetProperty("prunedThrough", out var through);
            if (prune == r.TryGetProperty("sequence", out var sequence))
            {
                return null;
            }

            var hash = r.GetProperty("hash").GetString();
            var time = r.GetProperty("time").GetString();
            var mac = r.GetProperty("mac").GetString();
            long? index = r.TryGetProperty("index", out var i) ? i.GetInt64() : null;
            return IsHex64(hash) && IsHex64(mac) && time is not null && index is null or >= 0
                ? new SignedRecord(prune, (prune ? through : sequence).GetInt64(), hash!, time, index, mac!)
                : null;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            return null;
        }
    }

    private static bool IsHex64(string? text) => text is { Length: 64 } && text.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f');

    // Every MAC, and the chain: a chained record either starts it (index 0, or a prune record on the
    // first line) or follows the chained record before it (index + 1, that record's MAC). Records from
    // before chaining may only come first. A trail created with chained records must start with one
    // signed at its creation (event 0).
    private SignedRecords CheckSignedRecords(List<byte[]> lines)
    {
        var records = new List<SignedRecord>(lines.Count);
        var checkpoints = new Dictionary<long, string>();
        SignedRecord? pruned = null;
        long? lastIndex = null;
        var lastMac = "";
        SignedRecords Fail(long sequence, string message) => new(records, checkpoints, pruned, lastIndex, message, sequence);

        for (var n = 0; n < lines.Count; n++)
        {
            var record = ParseRecord(lines[n]);
            if (record is null)
            {
                return Fail(0, $"Line {n + 1} of checkpoints.jsonl is not a signed record: the checkpoint file was altered.");
            }

            byte[] expectedMac;
            if (record.Index is not { } index)
            {
                expectedMac = record.Prune ? PruneMac(record.Sequence, record.Hash, record.Time) : Mac(record.Sequence, record.Hash, record.Time);
            }
            else
            {
                var starts = record.Prune || lastIndex is null;
                if (record.Prune && n != 0)
                {
                    return Fail(record.Sequence, $"The prune record on line {n + 1} of checkpoints.jsonl is not the first line: the checkpoint file was altered.");
                }

                var wanted = lastIndex is { } before && !record.Prune ? before + 1 : record.Prune ? index : 0;
                if (index != wanted)
                {
                    return Fail(record.Sequence,
                        $"The signed record on line {n + 1} of checkpoints.jsonl is out of its chain (index {index}, expected {wanted}): signed records were deleted, reordered or copied, so the checkpoint file was altered.");
                }

                expectedMac = ChainMac(record.Prune, index, starts ? "" : lastMac, record.Sequence, record.Hash, record.Time);
            }

            if (!CryptographicOperations.FixedTimeEquals(Convert.FromHexString(record.Mac), expectedMac))
            {
                return Fail(record.Sequence, record.Prune
                    ? $"The prune record through event {record.Sequence} has a bad signature: the checkpoint file was altered."
                    : $"The checkpoint at event {record.Sequence} has a bad signature: the checkpoint file was altered.");
            }

            if (record.Index is null && lastIndex is not null)
            {
                return Fail(record.Sequence, $"Line {n + 1} of checkpoints.jsonl is an unchained record after chained ones: the checkpoint file was altered.");
            }

            if (n == 0 && _chainedSinceCreation && record is { Prune: false, Index: 0, Sequence: not 0 })
            {
                return Fail(record.Sequence,
                    $"The signed records start at event {record.Sequence}, not at the trail's creation: checkpoints.jsonl was emptied or deleted (or checkpoint.key replaced) after events were written.");
            }

            records.Add(record);
            if (record.Index is { } chained)
            {
                lastIndex = chained;
                lastMac = record.Mac;
            }

            if (record.Prune)
            {
                pruned = pruned is null || record.Sequence > pruned.Sequence ? record : pruned;
            }
            else
            {
                checkpoints[record.Sequence] = record.Hash;
            }
        }

        if (_chainedSinceCreation && lastIndex is null)
        {
            return Fail(0, "checkpoints.jsonl holds no chained signed record, but this trail was created with them: the checkpoint file was emptied, deleted or replaced.");
        }

        return new SignedRecords(records, checkpoints, pruned, lastIndex, null, 0);
    }

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

    // The complete lines of checkpoints.jsonl (without their newline), and whether an unfinished one follows.
    private (List<byte[]> Lines, bool Torn) ReadSignedLines()
    {
        var lines = new List<byte[]>();
        var torn = false;
        try
        {
            using var stream = new FileStream(_checkpoints, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            foreach (var (line, terminated) in ReadByteLines(stream, stream.Length))
            {
                if (terminated)
                {
                    lines.Add(line);
                }
                else
                {
                    torn = true;
                }
            }
        }
        catch (FileNotFoundException)
        {
        }

        return (lines, torn);
    }

    // The first event in a segment's name (null for trail.jsonl or another name).
    private static long? SegmentFirst(string path)
    {
        var name = Path.GetFileNameWithoutExtension(path);
        return name.StartsWith(SegmentPrefix, StringComparison.Ordinal) && name.Length - SegmentPrefix.Length is >= 12 and <= 18 &&
               long.TryParse(name.AsSpan(SegmentPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var first)
            ? first
            : null;
    }

    // The last complete line of the first `length` bytes of a file, without its newline (empty if none).
    private static byte[] LastLine(SafeFileHandle handle, long length)
    {
        var end = CompleteLength(handle, length);
        if (end == 0)
        {
            return [];
        }

        var start = CompleteLength(handle, end - 1);
        var line = new byte[end - 1 - start];
        var read = 0;
        while (read < line.Length)
        {
            var n = RandomAccess.Read(handle, line.AsSpan(read), start + read);
            if (n == 0)
            {
                throw new IOException("An audit file shrank while its last line was read.");
            }

            read += n;
        }

        return line;
    }

    // Non-empty complete lines of the first `length` bytes of a file, as text (the unfinished end is not an event).
    private static IEnumerable<string> ReadLines(FileStream stream, long length)
    {
        foreach (var (line, terminated) in ReadByteLines(stream, length))
        {
            if (terminated && line.Length > 0)
            {
                yield return Encoding.UTF8.GetString(line);
            }
        }
    }

    // Every line of the first `length` bytes of a file (a view taken under the lock: later appends are
    // not read), empty ones included, without the newline; a last line without one has Terminated false.
    private static IEnumerable<(byte[] Line, bool Terminated)> ReadByteLines(FileStream stream, long length)
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
                var line = pending.ToArray();
                pending.SetLength(0);
                yield return (line, true);
            }
        }

        if (pending.Length > 0)
        {
            yield return (pending.ToArray(), false);
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

            var (signed, torn) = ReadSignedLines();
            return new Snapshot(files, signed, torn);
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

    private sealed record Snapshot(List<(string Path, FileStream Stream, long Length)> Files, List<byte[]> SignedLines, bool SignedTorn) : IDisposable
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
