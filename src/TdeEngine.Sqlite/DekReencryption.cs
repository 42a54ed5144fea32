using System.Security.Cryptography;
using Microsoft.Data.Sqlite;
using TdeEngine.Storage.Envelope;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Keys;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Pages;
using TdeEngine.Storage.Vfs;

namespace TdeEngine.Sqlite;

/// <summary>
/// A DEK re-encryption, online: a new DEK is added to the envelope and made active, every page is
/// opened and sealed again under it in batches, and the old DEKs are then removed from the envelope.
/// </summary>
/// <remarks>
/// <para>
/// Each batch runs with the pages to itself: in rollback-journal mode under SQLite's EXCLUSIVE lock
/// (no reader, no writer); in WAL mode under the write lock, after a TRUNCATE checkpoint, with the
/// WAL empty, so no checkpoint can write a page meanwhile. Readers in WAL mode may read a page as
/// it is overwritten; they read it again (the plaintext is the same, under a DEK they can fetch).
/// </para>
/// <para>
/// Other connections read the envelope again when they take the write lock, and when they meet a
/// page under a DEK they do not hold, so they seal under the new DEK from its first batch on.
/// </para>
/// <para>
/// A page rewritten in place can be torn by a power cut. The batch's old images are written to
/// <c>&lt;database&gt;-tderekey</c> and fsynced first; the next run puts back every page that does not
/// authenticate from there. Every page names its DEK version, so a run resumes where the last one
/// stopped without a cursor. Plaintext exists only in a pinned buffer that is wiped.
/// </para>
/// </remarks>
internal sealed class DekReencryption : IDisposable
{
    private const int E = DatabaseEnvelope.RegionSize;

    private readonly string _path;
    private readonly RawDatabaseFile _file;
    private readonly SqliteConnection _connection;
    private readonly SqliteConnection _checkpointer;
    private readonly DekCache _keys;
    private readonly bool _wal;
    private readonly TimeSpan _lockTimeout;

    // How long the job's connections wait inside SQLite for a lock before Microsoft.Data.Sqlite's own retry.
    private const int JobBusyTimeoutMs = 20;

    private readonly byte[] _plain;
    private ulong? _walAtSwitch;

    public DekReencryption(string path, TimeSpan lockTimeout)
    {
        _path = path;
        _lockTimeout = lockTimeout;
        _file = RawDatabaseFile.Open(path, writable: true);
        try
        {
            _ = TdeDatabases.ReadEnvelope(_file);   // a TDE database, or Tde.NotTdeDatabase before anything else
            _keys = TdeVfs.Current.Keys;
            _connection = new SqliteConnection(TdeSqlite.ConnectionString(path, SqliteOpenMode.ReadWrite));
            TdeSqlite.Explain(() =>
            {
                _connection.Open();
                return 0;
            });
            using var command = _connection.CreateCommand();
            command.CommandText = "PRAGMA journal_mode";
            _wal = string.Equals(command.ExecuteScalar() as string, "wal", StringComparison.OrdinalIgnoreCase);
            _checkpointer = new SqliteConnection(TdeSqlite.ConnectionString(path, SqliteOpenMode.ReadWrite));
            _checkpointer.Open();

            // The job waits inside SQLite for its lock, but briefly (the app's TDE connections wait up
            // to TdeStorageOptions.BusyTimeout). Waiting holds SQLite's PENDING lock, which stops new
            // readers, so the job gets its turn even under readers that never pause; not waiting at
            // all starved it (a rollback-mode rekey beside a busy reader took over a minute), and
            // waiting as long as the app would cost the app more. Measured: docs/benchmarks.md,
            // "rekey under load".
            TdeDatabases.Execute(_connection, $"PRAGMA busy_timeout = {JobBusyTimeoutMs}");
            TdeDatabases.Execute(_checkpointer, $"PRAGMA busy_timeout = {JobBusyTimeoutMs}");
            _plain = GC.AllocateUninitializedArray<byte>(TdeDatabases.ReadEnvelope(_file).PageSize, pinned: true);
        }
        catch
        {
            _checkpointer?.Dispose();
            _connection?.Dispose();
            _file.Dispose();
            throw;
        }
    }

    public void Run(int batchPages, Action<TdeRekeyProgress>? progress)
    {
        // 1. Repair what an interrupted run left, then make the new DEK active (or find the one an
        //    interrupted run made active: the envelope still lists the DEKs it was replacing).
        DatabaseEnvelope envelope = null!;
        var resumed = false;
        long pagesAtSwitch = 0;
        WithPagesToItself(() =>
        {
            _walAtSwitch = WalGeneration();
            var current = TdeDatabases.ReadEnvelope(_file);
            pagesAtSwitch = PageCount(current.PageSize);
            Repair(current);
            if (current.Deks.Count > 1)
            {
                envelope = current;
                resumed = true;
                return;
            }

            // The envelope must authenticate under its active DEK before it is signed under the new one.
            EnvelopeAuthentication.Authenticate(current, _path, _keys).Dispose();

            // The new DEK under the key that wraps the current ones, as they name it themselves (the
            // envelope's ARN field may come from an earlier build's unauthenticated envelope), and
            // bound to authenticated envelopes (its EncryptionContext): once the old DEKs are gone, the
            // envelope cannot be rewritten in the old format without a MAC.
            var context = DatabaseEnvelope.ContextFor(current.DatabaseId, envelopeBound: true);
            using var dek = _keys.Provider.GenerateDataKey(current.WrappingKeyId(_path), context);
            _keys.Add(dek.Wrapped, context, dek.Plaintext.Span);
            var version = current.Deks.Max(d => d.Version) + 1;
            envelope = current with
            {
                Sequence = current.Sequence + 1,
                ActiveDekVersion = version,
                KmsKeyArn = dek.KmsKeyArn,
                Deks = [.. current.Deks, new EnvelopeDek(version, current.Suite, 0, dek.Wrapped) { EnvelopeBound = true }],
            };
            using var macKey = EnvelopeMacKey.Derive(dek.Plaintext.Span);
            TdeDatabases.WriteEnvelopeSlot(_file, envelope, macKey);
        });

        // The envelope just written (or, resumed, the one read): OpenCrypto checks its MAC again.
        if (!resumed)
        {
            envelope = TdeDatabases.ReadEnvelope(_file);
        }

        using var crypto = MainDatabaseHandler.OpenCrypto(envelope, _path, _keys);
        crypto.PersistReservation = reserved => DatabaseEnvelope.PersistReservation(_path, crypto.ActiveVersion, reserved,
            () => TdeDatabases.ReadEnvelope(_file), current => EnvelopeAuthentication.Authenticate(current, _path, _keys, crypto, requireMac: true),
            (slot, offset) => _file.Write(slot, offset));

        // 2. The pages the file had at the switch (or when this run resumed), batch by batch, each
        //    batch under the lock for a moment only: pages added since were sealed under the new DEK
        //    (every writer and checkpoint reads the envelope when it takes its lock). Between batches
        //    the job pauses as long as the batch held the lock (at least 2 ms): waiting connections
        //    retry on their own schedule (SQLite's busy handler sleeps between tries), and a job that
        //    took the lock again at once would starve them.
        long rewritten = 0;
        var held = TimeSpan.Zero;
        for (long first = 1; first <= pagesAtSwitch; first += batchPages)
        {
            var last = Math.Min(pagesAtSwitch, first + batchPages - 1);
            Thread.Sleep(TimeSpan.FromMilliseconds(Math.Max(2, held.TotalMilliseconds)));
            held = WithPagesToItself(() => rewritten += Rewrite(crypto, first, Math.Min(last, PageCount(crypto.PageSize))));
            progress?.Invoke(new TdeRekeyProgress(last, pagesAtSwitch, rewritten, crypto.ActiveVersion, resumed));
        }

        // 3. Retire the old DEKs. Under the lock, every page is checked once more (a page written
        //    meanwhile by a connection is under the new DEK already; this proves it), then the
        //    envelope without them goes into both slots, so no copy of an old wrapped DEK is left.
        //    In WAL mode the WAL must have been restarted since the switch (or be empty), so no frame
        //    in it can be under an old DEK.
        WithPagesToItself(walReady: () => WalGeneration() is not { } now || now != _walAtSwitch, action: () =>
        {
            var total = PageCount(crypto.PageSize);
            rewritten += Rewrite(crypto, 1, total);
            var current = TdeDatabases.ReadEnvelope(_file);
            using var macKey = EnvelopeAuthentication.Authenticate(current, _path, _keys, crypto, requireMac: true);
            var final = current with
            {
                Sequence = current.Sequence + 1,
                Deks = current.Deks.Where(d => d.Version == crypto.ActiveVersion).ToList(),
            };
            TdeDatabases.WriteEnvelopeSlot(_file, final, macKey);
            TdeDatabases.WriteEnvelopeSlot(_file, final with { Sequence = final.Sequence + 1 }, macKey);
            RekeyJournal.Delete(_path);
            progress?.Invoke(new TdeRekeyProgress(total, total, rewritten, crypto.ActiveVersion, resumed));
        });
    }

    // Opens and seals again, under the active DEK, every page of [first, last] that is under another
    // one. The old images are durable in the journal before the first page is overwritten.
    private long Rewrite(DatabaseCrypto crypto, long first, long last)
    {
        var pageSize = crypto.PageSize;
        var lockBytePage = TdeDatabases.LockBytePage(pageSize);
        var batch = new List<(long Page, byte[] Old, byte[] New)>();
        var trailer = new byte[crypto.Reserve];
        try
        {
            for (var page = first; page <= last; page++)
            {
                if (page == lockBytePage)
                {
                    continue;
                }

                // The trailer first (the final check reads every page's): the whole page only when it
                // is under another DEK. Offsets lie within the length measured under the lock.
                var offset = E + ((page - 1) * pageSize);
                _file.Read(trailer, offset + pageSize - trailer.Length);
                if (PageTrailer.DekVersion(trailer) == crypto.ActiveVersion)
                {
                    continue;
                }

                var image = new byte[pageSize];
                _file.Read(image, offset);

                if (!crypto.TryOpen(PageFileKind.Database, page, image, _plain))
                {
                    throw new TdeStorageException(TdeStorageException.Codes.PageAuthenticationFailed,
                        $"Page {page} of '{_path}' failed authentication, so it cannot be re-encrypted; nothing of its batch was rewritten. Check the file with 'tde db verify'.",
                        _path, page);
                }

                var resealed = new byte[pageSize];
                crypto.Seal(PageFileKind.Database, page, _plain, resealed);
                batch.Add((page, image, resealed));
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(_plain);
        }

        if (batch.Count == 0)
        {
            return 0;
        }

        RekeyJournal.Write(_path, crypto.DatabaseId, pageSize, batch.Select(b => (b.Page, b.Old)).ToList());
        foreach (var (page, _, resealed) in batch)
        {
            _file.Write(resealed, E + ((page - 1) * pageSize));
        }

        _file.Sync();
        RekeyJournal.Clear(_path);
        return batch.Count;
    }

    // An interrupted batch: a page that no longer authenticates (torn) is put back as it was. A page
    // that authenticates is kept, whether the batch or a later writer wrote it.
    private void Repair(DatabaseEnvelope envelope)
    {
        var journal = RekeyJournal.Read(_path, envelope.DatabaseId, envelope.PageSize);
        if (journal.Count == 0)
        {
            RekeyJournal.Clear(_path);
            return;
        }

        using var crypto = MainDatabaseHandler.OpenCrypto(envelope, _path, _keys);
        var current = new byte[envelope.PageSize];
        try
        {
            foreach (var (page, image) in journal)
            {
                var offset = E + ((page - 1) * envelope.PageSize);
                if (offset + current.Length <= _file.CurrentLength())
                {
                    _file.Read(current, offset);
                    if (crypto.TryOpen(PageFileKind.Database, page, current, _plain))
                    {
                        continue;
                    }
                }

                if (!crypto.TryOpen(PageFileKind.Database, page, image, _plain))
                {
                    throw new TdeStorageException(TdeStorageException.Codes.PageAuthenticationFailed,
                        $"Page {page} of '{_path}' fails authentication, and so does its copy in '{RekeyJournal.PathFor(_path)}': the file was damaged another way. Restore it from a backup.",
                        _path, page);
                }

                _file.Write(image, offset);
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(_plain);
        }

        _file.Sync();
        RekeyJournal.Clear(_path);
    }

    private long PageCount(int pageSize) => Math.Max(0, (_file.CurrentLength() - E) / pageSize);

    // Runs the action while no other connection can write the database's pages: in rollback-journal
    // mode under SQLite's EXCLUSIVE lock (no reader either); in WAL mode under the write lock (no new
    // frames), once a checkpoint has copied every frame into the database, so no checkpoint has
    // anything left to write meanwhile. Waits up to the lock timeout for busy connections.
    private TimeSpan WithPagesToItself(Action action, Func<bool>? walReady = null)
    {
        var deadline = DateTime.UtcNow + _lockTimeout;
        while (true)
        {
            TdeDatabases.Execute(_connection, _wal ? "BEGIN IMMEDIATE" : "BEGIN EXCLUSIVE");
            try
            {
                if (!_wal || (FullyCheckpointed() && (walReady?.Invoke() ?? true)))
                {
                    var started = System.Diagnostics.Stopwatch.GetTimestamp();
                    action();
                    return System.Diagnostics.Stopwatch.GetElapsedTime(started);
                }
            }
            finally
            {
                TdeDatabases.Execute(_connection, "ROLLBACK");
            }

            if (walReady is not null)
            {
                Checkpoint(_connection, "TRUNCATE");   // restart the WAL (readers permitting), then look again
            }

            Wait(deadline);
        }
    }

    // A PASSIVE checkpoint through the second connection (it needs no write lock): true when every
    // frame of the WAL is in the database and no other checkpoint was running.
    private bool FullyCheckpointed()
    {
        var (busy, log, copied) = Checkpoint(_checkpointer, "PASSIVE");
        return busy == 0 && log == copied;
    }

    private static (long Busy, long Log, long Checkpointed) Checkpoint(SqliteConnection connection, string mode)
    {
        using var command = connection.CreateCommand();
        command.CommandText = $"PRAGMA wal_checkpoint({mode})";
        using var reader = command.ExecuteReader();
        return reader.Read() ? (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2)) : (1, 0, 0);
    }

    // The WAL's salts (header bytes 16..23), which change whenever SQLite restarts the WAL; null when
    // the WAL is missing or empty. Read with a descriptor of our own: SQLite locks no byte of the WAL.
    private ulong? WalGeneration()
    {
        var wal = _path + "-wal";
        try
        {
            using var handle = File.OpenHandle(wal, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            Span<byte> header = stackalloc byte[32];
            return RandomAccess.Read(handle, header, 0) == 32 ? System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(header[16..]) : null;
        }
        catch (FileNotFoundException)
        {
            return null;
        }
    }

    private void Wait(DateTime deadline)
    {
        if (DateTime.UtcNow > deadline)
        {
            throw new TimeoutException($"'{_path}' stayed too busy to re-encrypt its next batch for {_lockTimeout.TotalSeconds:N0} s (long read transactions keep the WAL from being checkpointed). Retry later: the re-encryption resumes where it stopped.");
        }

        Thread.Sleep(20);
    }

    public void Dispose()
    {
        _checkpointer.Dispose();
        _connection.Dispose();
        _file.Dispose();
    }
}
