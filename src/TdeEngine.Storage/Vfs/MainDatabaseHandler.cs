using System.Security.Cryptography;
using TdeEngine.Storage.Envelope;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Keys;
using TdeEngine.Storage.Native;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Vfs;

/// <summary>
/// The main database file. Physically it is the 4 KiB envelope followed by SQLite's pages, each
/// sealed; SQLite sees offsets without the envelope and pages with zeroed reserved bytes.
/// <code>
///  physical:  [ envelope slot A | envelope slot B ][ page 1 (sealed) ][ page 2 (sealed) ] ...
///  SQLite:                                         ^ offset 0
/// </code>
/// </summary>
internal sealed unsafe class MainDatabaseHandler : FileHandler
{
    private const int E = DatabaseEnvelope.RegionSize;

    private readonly byte[] _sealed;
    private readonly byte[] _plain;

    // SQLite re-reads the change counter in page 1's header at the start of every transaction in
    // rollback-journal mode: a 16-byte read that costs us a whole page open. The last page 1 opened
    // is kept with its trailer; nonces are random per seal, so an unchanged trailer on disk means
    // the same sealed page and the cached plaintext can be served.
    private readonly byte[] _page1Plain;
    private readonly byte[] _page1Trailer;
    private bool _page1Cached;

    // The wrapped unix file has mapped the sealed file (see Fetch).
    private bool _mapped;

    // How often a page that does not authenticate is read again before it is reported: a DEK
    // re-encryption rewrites pages in place while WAL readers may read them, so a read can meet a
    // page half written (it authenticates on the next read).
    private const int TornReadRetries = 4;

    private readonly DekCache _keys;

    // The file's length as xFileSize gave it under the current shared lock in rollback-journal mode
    // (-1: unknown); reset by every lock change, write and truncate, and never set once the WAL-index
    // was used.
    private long _sizeUnderLock = -1;
    private bool _sawShm;

    // Set once this connection has checked a MAC'd envelope of the file: an envelope without a MAC
    // (the format of earlier builds) read after that is a downgrade, refused as tampered.
    private bool _sawAuthenticated;
    private byte[] _envelopeRegion;
    private byte[] _envelopeScratch = new byte[E];
    private int _lockLevel;

    // This connection wrote the first page 1 of an empty database: the mark is cleared at the next
    // sync (or when the transaction ends without one).
    private bool _clearEmptyMark;

    private MainDatabaseHandler(SqliteFile* underlying, string path, byte[] region, DatabaseEnvelope envelope, DatabaseCrypto crypto, DekCache keys)
        : base(underlying, path)
    {
        _keys = keys;
        _envelopeRegion = region;
        Envelope = envelope;
        Crypto = crypto;
        crypto.Refresh = RefreshKeys;
        _sealed = GC.AllocateUninitializedArray<byte>(crypto.PageSize, pinned: true);
        _plain = GC.AllocateUninitializedArray<byte>(crypto.PageSize, pinned: true);
        _page1Plain = GC.AllocateUninitializedArray<byte>(crypto.PageSize, pinned: true);
        _page1Trailer = new byte[crypto.Reserve];
        _sawAuthenticated = envelope.Authenticated;
        crypto.PersistReservation = PersistReservation;
    }

    public DatabaseEnvelope Envelope { get; private set; }

    /// <summary>The <c>PRAGMA mmap_size</c> a new connection to this file gets (0: none); see <see cref="TdeStorageOptions.MemoryMapSize"/>.</summary>
    public long MemoryMapSize { get; set; }

    /// <summary>The <c>PRAGMA busy_timeout</c> (milliseconds) a new connection to this file gets (0: none); see <see cref="TdeStorageOptions.BusyTimeout"/>.</summary>
    public int BusyTimeoutMs { get; set; }

    public DatabaseCrypto Crypto { get; }

    private int P => Crypto.PageSize;

    /// <summary>
    /// The URI names a key, cipher or page size for a database that exists already but holds no
    /// page, and its envelope says otherwise: the open fails with <c>Tde.InvalidParameter</c>. These
    /// parameters apply only when a file is created, and an empty file is what a failed
    /// <c>VACUUM INTO</c> leaves: a second attempt naming a backup key must not write the copy under
    /// the key of the first. (A database with pages keeps what it was created with, as before, and a
    /// read-only open creates nothing, so it is not checked.)
    /// </summary>
    internal void RefuseOtherCreationParameters(TdeVfs.CreationParameters named, bool readOnly)
    {
        if (readOnly || !Envelope.Empty || named == new TdeVfs.CreationParameters(null, null, null))
        {
            return;
        }

        long physical;
        if (Inner->xFileSize(Underlying, &physical) != SqliteNative.SQLITE_OK || physical > E)
        {
            return;
        }

        var differences = new List<string>();
        if (named.Cipher is { } suite && suite != Envelope.Suite)
        {
            differences.Add($"cipher={PageCipherSuites.Name(suite)} (it is {PageCipherSuites.Name(Envelope.Suite)})");
        }

        if (named.PageSize is { } pageSize && pageSize != Envelope.PageSize)
        {
            differences.Add($"page_size={pageSize} (it has {Envelope.PageSize}-byte pages)");
        }

        // A key id or key ARN is compared as written. An alias cannot be told from here without
        // asking the KMS, which a role allowed only GenerateDataKey and Decrypt may not do (and an
        // alias may have moved to another key meanwhile, as in an alias-based rotation): it is not checked.
        if (named.KmsKeyId is { } key && !key.StartsWith("alias/", StringComparison.Ordinal) && !key.Contains(":alias/", StringComparison.Ordinal) &&
            key != Envelope.KmsKeyArn && !Envelope.KmsKeyArn.EndsWith("key/" + key, StringComparison.Ordinal))
        {
            differences.Add($"kms_key={key} (its DEK is wrapped by {Envelope.KmsKeyArn})");
        }

        if (differences.Count > 0)
        {
            throw new TdeStorageException(TdeStorageException.Codes.InvalidParameter,
                $"'{Path}' exists already, as an empty TDE database, and the URI names {string.Join(", ", differences)}. These parameters apply only when a file is created (a failed VACUUM INTO leaves such a file): delete it, it holds no data, and try again.",
                Path);
        }
    }

    /// <summary>Reads the envelope through the wrapped file, unwraps the DEKs and makes the page ciphers.</summary>
    public static MainDatabaseHandler Open(SqliteFile* underlying, string path, DekCache keys)
    {
        var region = new byte[E];
        int rc;
        fixed (byte* p = region)
        {
            rc = underlying->pMethods->xRead(underlying, p, E, 0);
        }

        if (rc != SqliteNative.SQLITE_OK && rc != SqliteNative.SQLITE_IOERR_SHORT_READ)
        {
            throw new TdeStorageException(TdeStorageException.Codes.NotTdeDatabase, $"Could not read the envelope of '{path}' (SQLite I/O error {rc}).", path);
        }

        var envelope = DatabaseEnvelope.Read(region, path);
        var crypto = OpenCrypto(envelope, path, keys);
        return new MainDatabaseHandler(underlying, path, region, envelope, crypto, keys);
    }

    /// <summary>
    /// Unwraps every DEK of the envelope, checks the envelope's MAC with the active one (throws
    /// <c>Tde.EnvelopeTampered</c>), and makes the page ciphers.
    /// </summary>
    internal static DatabaseCrypto OpenCrypto(DatabaseEnvelope envelope, string path, DekCache keys)
    {
        var ciphers = new Dictionary<uint, IPageCipher>();
        var macKeys = new Dictionary<uint, EnvelopeMacKey>();
        try
        {
            foreach (var dek in envelope.Deks)
            {
                using var key = EnvelopeAuthentication.UnwrapDek(keys, dek, envelope, path);
                ciphers[dek.Version] = PageCipher.Create(dek.Suite, key.Span);
                macKeys[dek.Version] = EnvelopeMacKey.Derive(key.Span);
            }

            // Before any page is opened or the seal count is taken from the envelope.
            envelope.VerifyMac(macKeys[envelope.ActiveDekVersion], path);
            var counter = SealCounters.For(envelope, path);
            return new DatabaseCrypto(envelope.DatabaseId, envelope.PageSize, envelope.Reserve, envelope.ActiveDekVersion, ciphers, macKeys, counter);
        }
        catch
        {
            foreach (var cipher in ciphers.Values)
            {
                cipher.Dispose();
            }

            foreach (var macKey in macKeys.Values)
            {
                macKey.Dispose();
            }

            throw;
        }
    }

    public override int Read(byte* buffer, int amount, long offset)
    {
        var output = new Span<byte>(buffer, amount);
        if (amount == P && offset % P == 0)
        {
            // The common case, one whole page: read the sealed page straight into SQLite's buffer and
            // open it in place (no copies).
            for (var attempt = 0; ; attempt++)
            {
                var rc = Inner->xRead(Underlying, buffer, amount, E + offset);
                if (rc == SqliteNative.SQLITE_IOERR_SHORT_READ)
                {
                    output.Clear();
                    return offset == 0 ? MissingPage1(output, 0) : PastTheEnd(offset / P);
                }

                if (rc != SqliteNative.SQLITE_OK)
                {
                    return rc;
                }

                // (A failed open clears the page, so a hole is looked for before it; UnwrittenPage1 returns at once for a sealed page.)
                if (offset == 0 && UnwrittenPage1(output, output))
                {
                    return SqliteNative.SQLITE_OK;
                }

                if (Crypto.TryOpen(PageFileKind.Database, (offset / P) + 1, output, output))
                {
                    var length = offset == 0 ? CheckLength(output) : SqliteNative.SQLITE_OK;
                    if (length != SqliteNative.SQLITE_OK)
                    {
                        output.Clear();
                    }

                    return length;
                }

                if (attempt == TornReadRetries)
                {
                    return Tampered(offset / P, output);
                }

                Thread.Yield();
            }
        }

        var end = offset + amount;
        var shortRead = false;
        for (var pageIndex = offset / P; pageIndex * P < end; pageIndex++)
        {
            var pageStart = pageIndex * P;
            var from = (int)Math.Max(offset - pageStart, 0);
            var to = (int)Math.Min(end - pageStart, P);
            var target = output.Slice((int)(pageStart + from - offset), to - from);
            byte[]? source = null;
            var rc = SqliteNative.SQLITE_OK;
            for (var attempt = 0; source is null && attempt <= TornReadRetries; attempt++)
            {
                rc = ReadRaw(_sealed, E + pageStart);
                if (rc != SqliteNative.SQLITE_OK)
                {
                    break;
                }

                source = pageIndex == 0 ? OpenPage1() : Crypto.TryOpen(PageFileKind.Database, pageIndex + 1, _sealed, _plain) ? _plain : null;
            }

            if (rc == SqliteNative.SQLITE_IOERR_SHORT_READ)
            {
                // Beyond the end of the file: SQLite expects zeros and a short read, as with a plain
                // file, unless the page should be there (a truncated file).
                target.Clear();
                var pastTheEnd = pageIndex == 0 ? MissingPage1(target, from) : PastTheEnd(pageIndex);
                if (pastTheEnd != SqliteNative.SQLITE_IOERR_SHORT_READ)
                {
                    output.Clear();
                    return pastTheEnd;
                }

                shortRead = true;
                continue;
            }

            if (rc != SqliteNative.SQLITE_OK)
            {
                return rc;
            }

            if (source is null && pageIndex == 0 && UnwrittenPage1(_sealed, _plain))
            {
                source = _plain;
            }

            if (source is null)
            {
                return Tampered(pageIndex, target);
            }

            if (pageIndex == 0)
            {
                var length = CheckLength(source);
                if (length != SqliteNative.SQLITE_OK)
                {
                    output.Clear();
                    return length;
                }
            }

            source.AsSpan(from, to - from).CopyTo(target);
        }

        return shortRead ? SqliteNative.SQLITE_IOERR_SHORT_READ : SqliteNative.SQLITE_OK;
    }

    // Page 1 as just read into _sealed: from the cache when its trailer is unchanged, else opened and cached.
    private byte[]? OpenPage1()
    {
        var trailer = _sealed.AsSpan(Crypto.BodySize, Crypto.Reserve);
        if (_page1Cached && trailer.SequenceEqual(_page1Trailer))
        {
            return _page1Plain;
        }

        _page1Cached = false;
        trailer.CopyTo(_page1Trailer);
        if (!Crypto.TryOpen(PageFileKind.Database, 1, _sealed, _page1Plain))
        {
            return null;
        }

        _page1Cached = true;
        return _page1Plain;
    }

    /// <summary>
    /// A read of page <paramref name="pageIndex"/> + 1 came back short. Only a page wholly past the end
    /// of a database that does not claim it may read as zeros (<c>SQLITE_IOERR_SHORT_READ</c>, as
    /// SQLite expects): a page cut in part, or a page below the count in page 1's header, means the
    /// file was truncated, and zeros would be taken for an empty page.
    /// </summary>
    /// <remarks>
    /// Checked only under a lock: SQLite reads page 1's header once before it takes any lock, and a
    /// hot journal it has not played back yet may still describe a longer file.
    /// </remarks>
    private int PastTheEnd(long pageIndex)
    {
        if (_lockLevel < SqliteNative.SQLITE_LOCK_SHARED)
        {
            return SqliteNative.SQLITE_IOERR_SHORT_READ;
        }

        long physical;
        var rc = Inner->xFileSize(Underlying, &physical);
        if (rc != SqliteNative.SQLITE_OK)
        {
            return rc;
        }

        var wholePages = Math.Max(0, physical - E) / P;
        if (physical > E + (pageIndex * P))
        {
            return Truncated(pageIndex + 1, wholePages, claimed: null);   // cut inside the page
        }

        // A page wholly past the end: does page 1 say the database holds it?
        if (ReadRaw(_sealed, E) != SqliteNative.SQLITE_OK)
        {
            return Truncated(1, wholePages, claimed: null);
        }

        var page1 = OpenPage1() ?? (UnwrittenPage1(_sealed, _plain) ? _plain : null);
        if (page1 is null)
        {
            return Tampered(0, default);
        }

        var claimed = ClaimedPages(page1);
        return pageIndex < claimed && !WalReadWithoutReadLock(page1) ? Truncated(pageIndex + 1, wholePages, claimed) : SqliteNative.SQLITE_IOERR_SHORT_READ;
    }

    /// <summary>
    /// A read of page 1 came back short. A file that holds no page is an empty database when its
    /// envelope says so (<see cref="DatabaseEnvelope.Empty"/>): the read gives zeros, except the page
    /// size and reserved bytes in the header (bytes 16 to 23), since SQLite takes them from there
    /// when it opens a file (before any lock) and would use its defaults, with no reserved bytes, for
    /// a file without them. Any other file without page 1 was truncated.
    /// </summary>
    private int MissingPage1(Span<byte> target, int from)
    {
        long physical;
        var rc = Inner->xFileSize(Underlying, &physical);
        if (rc != SqliteNative.SQLITE_OK)
        {
            return rc;
        }

        if (physical > E)
        {
            // Cut inside page 1. Unlocked (SQLite's first look at the header) it reads as zeros, as before
            // page 1 of a new database is written; under a lock it is reported.
            return _lockLevel < SqliteNative.SQLITE_LOCK_SHARED ? SqliteNative.SQLITE_IOERR_SHORT_READ : Truncated(1, 0, claimed: null);
        }

        rc = NoPages(physical);
        if (rc != SqliteNative.SQLITE_OK)
        {
            return rc;
        }

        Span<byte> header = stackalloc byte[EmptyDatabase.GeometryEnd];
        EmptyDatabase.WriteGeometry(header, P, Crypto.Reserve);
        if (from < header.Length)
        {
            var n = Math.Min(header.Length - from, target.Length);
            header.Slice(from, n).CopyTo(target);
        }

        return SqliteNative.SQLITE_IOERR_SHORT_READ;
    }

    /// <summary>
    /// Page 1 of an empty database that SQLite has not written yet, although it wrote later pages: a
    /// first transaction spilled pages to the file and did not commit (the process died). The file
    /// has a hole of zeros there (a sealed page is never all zeros: its trailer holds a random nonce).
    /// While the envelope still says the database is empty, it reads as zeros with the geometry
    /// header, as <see cref="MissingPage1"/>, so that SQLite opens the file and rolls the transaction
    /// back from its journal, which empties the file again.
    /// </summary>
    private bool UnwrittenPage1(ReadOnlySpan<byte> sealedPage, Span<byte> plain)
    {
        if (sealedPage[..P].ContainsAnyExcept((byte)0))
        {
            return false;
        }

        try
        {
            RefreshKeys();
        }
        catch (Exception)
        {
            return false;   // reported as a page that fails authentication
        }

        if (!Envelope.Empty)
        {
            return false;
        }

        plain[..P].Clear();
        EmptyDatabase.WriteGeometry(plain, P, Crypto.Reserve);
        return true;
    }

    /// <summary>
    /// The file holds no page (<paramref name="physical"/> bytes, at most the envelope): fine when its
    /// envelope, as on disk now, says the database is empty; otherwise it was truncated.
    /// </summary>
    private int NoPages(long physical)
    {
        bool empty;
        try
        {
            // Read again each time (this is rare): another connection may have written page 1, which
            // clears the mark, or emptied the file, which sets it. A changed envelope is authenticated.
            RefreshKeys();
            empty = Envelope.Empty;
        }
        catch (Exception e)
        {
            return TdeVfs.Fail(e as TdeStorageException ?? new TdeStorageException(TdeStorageException.Codes.EnvelopeDamaged,
                $"Could not read the envelope of '{Path}' again: {e.Message}", Path, inner: e), SqliteNative.SQLITE_IOERR_READ);
        }

        return physical == E && empty ? SqliteNative.SQLITE_OK : Truncated(1, 0, claimed: null);
    }

    /// <summary>Page 1 was just opened: the file must hold every page its header counts (see <see cref="PastTheEnd"/>).</summary>
    private int CheckLength(ReadOnlySpan<byte> page1)
    {
        var claimed = ClaimedPages(page1);
        if (claimed <= 1 || _lockLevel < SqliteNative.SQLITE_LOCK_SHARED || WalReadWithoutReadLock(page1))
        {
            return SqliteNative.SQLITE_OK;
        }

        var physical = _sizeUnderLock;
        if (physical < 0)
        {
            var rc = Inner->xFileSize(Underlying, &physical);
            if (rc != SqliteNative.SQLITE_OK)
            {
                return rc;
            }
        }

        var wholePages = Math.Max(0, physical - E) / P;
        // SQLite never writes the page that holds its pending-byte lock (the first page past 1 GiB),
        // so a database whose last counted page is that one ends a page short.
        var lockPage = (0x40000000L / P) + 1;
        var enough = wholePages >= claimed || (claimed == lockPage && wholePages == claimed - 1);
        return enough && (physical - E) % P == 0 ? SqliteNative.SQLITE_OK : Truncated(Math.Min(wholePages + 1, claimed), wholePages, claimed);
    }

    // A WAL database (page 1 bytes 18 and 19 are 2) read by a connection that holds no WAL read lock:
    // a connection that last read the file in rollback mode reads page 1's change counter before it
    // notices the WAL. Another connection's checkpoint may then be writing the file in page order,
    // page 1 (with the new count) first and the file's length last, so the count cannot be checked
    // against the length yet. Once the connection uses the WAL-index, a checkpoint cannot run under
    // its read snapshot, and the check applies again.
    private bool WalReadWithoutReadLock(ReadOnlySpan<byte> page1) => !_sawShm && page1[18] == 2 && page1[19] == 2;

    /// <summary>
    /// The page count in a page 1 header (bytes 28..31), or 0 when SQLite would not trust it either
    /// (the version-valid-for number at 92..95 differs from the change counter at 24..27).
    /// </summary>
    internal static long ClaimedPages(ReadOnlySpan<byte> page1) =>
        page1.Slice(24, 4).SequenceEqual(page1.Slice(92, 4)) ? System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(page1[28..]) : 0;

    private int Truncated(long page, long wholePages, long? claimed)
    {
        var what = claimed is { } n
            ? $"its header counts {n} pages, the file holds {wholePages} whole pages"
            : $"the file ends inside page {page} or before page 1 (it holds {wholePages} whole pages)";
        return TdeVfs.Fail(new TdeStorageException(TdeStorageException.Codes.PageAuthenticationFailed,
            $"Page {page} of '{Path}' failed authentication: the file is truncated ({what}). Restore the file from a backup.",
            Path, page), SqliteNative.SQLITE_IOERR_DATA);
    }

    private int Tampered(long pageIndex, Span<byte> target)
    {
        target.Clear();
        var advice = RekeyJournal.IsPending(Path)
            ? $"A DEK re-encryption of this file was interrupted while it rewrote pages: run 'tde db rekey {Path}' (or TdeDatabases.Rekey) to repair them from its journal and finish."
            : "Restore the file from a backup.";
        return TdeVfs.Fail(new TdeStorageException(TdeStorageException.Codes.PageAuthenticationFailed,
            $"Page {pageIndex + 1} of '{Path}' failed authentication: it was altered, moved, or comes from another database. {advice}",
            Path, pageIndex + 1), SqliteNative.SQLITE_IOERR_DATA);
    }

    public override int Write(byte* buffer, int amount, long offset)
    {
        _sizeUnderLock = -1;
        var input = new ReadOnlySpan<byte>(buffer, amount);
        if (amount == P && offset % P == 0)
        {
            if (offset == 0 && !KeepsGeometry(input))
            {
                return TdeVfs.Fail(new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation,
                    $"SQLite tried to change the page size or the reserved bytes of '{Path}' (for example a backup from a plain database into it). A TDE database keeps {Crypto.Reserve} reserved bytes in {P}-byte pages; copy data into it with SQL (or 'tde db encrypt') instead.",
                    Path), SqliteNative.SQLITE_IOERR_WRITE);
            }

            Crypto.Seal(PageFileKind.Database, (offset / P) + 1, input, _sealed);
            if (offset == 0)
            {
                _page1Cached = false;
            }

            var rc = WriteRaw(_sealed, E + offset);
            // The first page 1 of an empty database: the mark is cleared once the page is durable
            // (see Sync), since from then on a file without pages was truncated.
            _clearEmptyMark |= rc == SqliteNative.SQLITE_OK && offset == 0 && Envelope.Empty;
            return rc;
        }

        // SQLite writes whole pages to the database file; anything else (a page size change by VACUUM)
        // would leave pages the envelope cannot describe, so it is refused.
        return TdeVfs.Fail(new TdeStorageException(TdeStorageException.Codes.UnsupportedOperation,
            $"A write of {amount} bytes at offset {offset} to '{Path}' is not a whole {P}-byte page. Changing the page size of a TDE database is not supported; create a new database with the page size you need and copy the data.",
            Path), SqliteNative.SQLITE_IOERR_WRITE);
    }

    // Page 1 must keep the page size and reserve the envelope describes, or pages would overlap trailers.
    private bool KeepsGeometry(ReadOnlySpan<byte> page1)
    {
        var pageSize = (page1[16] << 8) | page1[17];
        return (pageSize == 1 ? 65536 : pageSize) == P && page1[20] == Crypto.Reserve;
    }

    public override int Truncate(long size)
    {
        _sizeUnderLock = -1;
        // SQLite empties the file (a rollback of the first transaction): the mark is written and
        // made durable first, so that a file without pages is never left unmarked, even by a power
        // cut (it would read as truncated, and its hot journal would never be played back).
        if (size == 0)
        {
            _clearEmptyMark = false;
            var rc = MarkEmpty(true, SqliteNative.SQLITE_IOERR_TRUNCATE);
            if (rc != SqliteNative.SQLITE_OK)
            {
                return rc;
            }
        }

        return Inner->xTruncate(Underlying, E + size);
    }

    /// <summary>
    /// SQLite syncs the file when it commits (before it deletes the rollback journal) and when a
    /// checkpoint ends. After the sync that made an empty database's first page 1 durable, the
    /// empty mark is cleared: clearing it earlier, a power cut could leave a file with no page and
    /// no mark beside the transaction's hot journal, which then could never be played back.
    /// </summary>
    public override int Sync(int flags)
    {
        var rc = base.Sync(flags);
        return rc == SqliteNative.SQLITE_OK && _clearEmptyMark ? ClearEmptyMark(flags) : rc;
    }

    /// <summary>
    /// The write transaction ends. With <c>PRAGMA synchronous=OFF</c> SQLite never syncs, so a mark
    /// still to be cleared is cleared here, while the lock is held (such a database is not meant to
    /// survive a power cut in any case).
    /// </summary>
    private int ClearEmptyMarkBeforeUnlock(int level)
    {
        return _clearEmptyMark && _lockLevel >= SqliteNative.SQLITE_LOCK_RESERVED && level < SqliteNative.SQLITE_LOCK_RESERVED
            ? ClearEmptyMark(syncFlags: 0)
            : SqliteNative.SQLITE_OK;
    }

    private int ClearEmptyMark(int syncFlags)
    {
        var rc = MarkEmpty(false, SqliteNative.SQLITE_IOERR_WRITE);
        _clearEmptyMark = rc != SqliteNative.SQLITE_OK;   // tried again at the next sync or transaction end
        return rc == SqliteNative.SQLITE_OK && syncFlags != 0 ? base.Sync(syncFlags) : rc;
    }

    /// <summary>
    /// Writes <see cref="DatabaseEnvelope.Empty"/> into the envelope, unless the envelope on disk
    /// already says so. A cleared mark is written into both slots: a slot that still said "empty"
    /// would be read once the newer slot is damaged (a torn write, or one byte edited by someone
    /// without the DEK), and the database cut back to its envelope would pass for an empty one. A
    /// set mark is synced before SQLite truncates the file.
    /// </summary>
    private int MarkEmpty(bool empty, int failure)
    {
        try
        {
            if (empty)
            {
                if (ReadEnvelope().Empty)
                {
                    return SqliteNative.SQLITE_OK;
                }

                Envelope = DatabaseEnvelope.Persist(Path, "the empty-database mark", e => e with { Empty = true }, written => written.Empty,
                    ReadEnvelope, Authenticate, WriteSlot);
                return base.Sync(SqliteNative.SQLITE_SYNC_NORMAL);
            }

            // Each write goes to the other slot (one sequence on): at most two, until neither says empty.
            for (var write = 0; write < 4 && AnySlotSaysEmpty(); write++)
            {
                var before = ReadEnvelope().Sequence;
                Envelope = DatabaseEnvelope.Persist(Path, "the empty-database mark", e => e with { Empty = false }, written => !written.Empty && written.Sequence > before,
                    ReadEnvelope, Authenticate, WriteSlot);
            }

            return SqliteNative.SQLITE_OK;
        }
        catch (Exception e)
        {
            return TdeVfs.Fail(e as TdeStorageException ?? new TdeStorageException(TdeStorageException.Codes.EnvelopeDamaged,
                $"Could not write the envelope of '{Path}': {e.Message}", Path, inner: e), failure);
        }
    }

    /// <summary>
    /// With <c>PRAGMA mmap_size</c> set, SQLite asks for each page it reads. The wrapped unix file is
    /// asked too, which maps the sealed file (once, and again after SQLite dropped the mapping), and
    /// the page it offers is given back at once. The page then comes through <see cref="Read"/>:
    /// the unix file copies it from the mapping instead of making a system call, and it is opened.
    /// </summary>
    public override int Fetch(long offset, int amount)
    {
        if (_mapped || Inner->iVersion < 3 || Inner->xFetch is null)
        {
            return SqliteNative.SQLITE_OK;   // SQLite asks on every page it gets, cached or not: keep this cheap
        }

        void* mapped = null;
        var rc = Inner->xFetch(Underlying, E + offset, amount, &mapped);
        if (mapped is not null)
        {
            Inner->xUnfetch(Underlying, E + offset, mapped);
            _mapped = true;   // until SQLite drops the mapping or changes its size limit
        }

        return rc;
    }

    protected override void Unmapped() => _mapped = false;

    public override int FileSize(long* size)
    {
        long physical;
        var rc = Inner->xFileSize(Underlying, &physical);
        if (rc == SqliteNative.SQLITE_OK && physical <= E)
        {
            rc = NoPages(physical);   // an empty database, or a truncated file
        }

        *size = Math.Max(0, physical - E);
        // Rollback-journal mode, under a shared lock: no rollback-mode connection can write until this
        // one unlocks, so page 1's length check can use this size instead of asking again. A WAL
        // checkpoint can (readers keep their shared lock): the size is never kept once this connection
        // used the WAL-index, and a WAL database read before that is not length-checked at all
        // (WalReadWithoutReadLock).
        _sizeUnderLock = rc == SqliteNative.SQLITE_OK && !_sawShm && _lockLevel >= SqliteNative.SQLITE_LOCK_SHARED ? physical : -1;
        return rc;
    }

    public override int FileControl(int op, void* arg)
    {
        if (op == SqliteNative.SQLITE_FCNTL_MMAP_SIZE)
        {
            _mapped = false;   // the unix file may drop or remap its mapping: ask again on the next page
        }

        if (op == SqliteNative.SQLITE_FCNTL_SIZE_HINT && arg is not null)
        {
            var hint = *(long*)arg + E;
            return Inner->xFileControl(Underlying, op, &hint);
        }

        return base.FileControl(op, arg);
    }

    /// <summary>
    /// A write transaction starts (rollback journal: RESERVED): before anything is sealed, the
    /// envelope is read again, so pages are sealed under the DEK a re-encryption made active.
    /// </summary>
    public override int Lock(int level)
    {
        _sizeUnderLock = -1;
        var rc = base.Lock(level);
        if (rc != SqliteNative.SQLITE_OK)
        {
            return rc;
        }

        var before = _lockLevel;
        _lockLevel = Math.Max(_lockLevel, level);
        if (level >= SqliteNative.SQLITE_LOCK_RESERVED && before < SqliteNative.SQLITE_LOCK_RESERVED && !TryRefresh())
        {
            base.Unlock(SqliteNative.SQLITE_LOCK_SHARED);
            _lockLevel = SqliteNative.SQLITE_LOCK_SHARED;
            return SqliteNative.SQLITE_IOERR_LOCK;
        }

        return rc;
    }

    public override int Unlock(int level)
    {
        _sizeUnderLock = -1;
        // While the write lock is still held. The transaction has committed by now: a failure is
        // recorded (TdeSqlite.LastError) and the mark cleared at the next one, not reported as a
        // failed commit.
        ClearEmptyMarkBeforeUnlock(level);
        var rc = base.Unlock(level);
        if (rc == SqliteNative.SQLITE_OK)
        {
            _lockLevel = level;
        }

        return rc;
    }

    /// <summary>
    /// How many wal-index locks this connection has taken or released. Between two of them the
    /// connection's hold on the WAL does not change: a reader that uses frames keeps the WAL from
    /// being restarted, so the WAL header's salts stay those it read (<see cref="WalHandler"/>).
    /// In exclusive locking mode SQLite takes no such locks, and no other connection writes the WAL.
    /// </summary>
    internal long ShmLockCalls { get; private set; }

    // This connection's mapping of the wal-index's first region (null: not mapped, or a wal-index
    // in heap memory in exclusive locking mode). Valid until this connection unmaps it, which SQLite
    // does only when it closes the WAL.
    private byte* _walIndex;

    /// <summary>
    /// The salts of the WAL generation, from the wal-index header this connection has mapped (the
    /// 8 bytes of <c>aSalt</c> at offset 32, copied there from the WAL header as they are on disk);
    /// false when it has none mapped. SQLite writes a new generation's salts to the wal-index when it
    /// restarts the WAL, which it does only when no reader uses a frame, and before it writes any
    /// frame of that generation. The -shm is not authenticated: these salts only tell a
    /// <see cref="WalHandler"/> whether the WAL header's salts it read may be used again; they are
    /// never bound themselves.
    /// </summary>
    internal bool TryReadWalIndexSalts(Span<byte> salts)
    {
        if (_walIndex is null)
        {
            return false;
        }

        new ReadOnlySpan<byte>(_walIndex + 32, 8).CopyTo(salts);
        return true;
    }

    public override int ShmMap(int page, int pageSize, int extend, void** mapping)
    {
        var rc = base.ShmMap(page, pageSize, extend, mapping);
        if (page == 0 && rc == SqliteNative.SQLITE_OK && *mapping is not null && pageSize >= 48)
        {
            _walIndex = (byte*)*mapping;
        }

        return rc;
    }

    public override int ShmUnmap(int deleteFlag)
    {
        _walIndex = null;
        return base.ShmUnmap(deleteFlag);
    }

    /// <summary>
    /// WAL mode: the write lock (0), the checkpoint lock (1) and the recovery lock (2) are the ones
    /// under which pages and frames are sealed or every frame is read: the envelope is read again
    /// once one of them is held.
    /// </summary>
    public override int ShmLock(int offset, int n, int flags)
    {
        ShmLockCalls++;
        _sawShm = true;
        _sizeUnderLock = -1;
        var rc = base.ShmLock(offset, n, flags);
        const int exclusiveLock = SqliteNative.SQLITE_SHM_LOCK | SqliteNative.SQLITE_SHM_EXCLUSIVE;
        if (rc == SqliteNative.SQLITE_OK && (flags & exclusiveLock) == exclusiveLock && offset <= 2 && !TryRefresh())
        {
            base.ShmLock(offset, n, SqliteNative.SQLITE_SHM_UNLOCK | SqliteNative.SQLITE_SHM_EXCLUSIVE);
            return SqliteNative.SQLITE_IOERR_SHMLOCK;
        }

        return rc;
    }

    private bool TryRefresh()
    {
        try
        {
            RefreshKeys();
            return true;
        }
        catch (Exception e)
        {
            TdeVfs.Fail(e as TdeStorageException ?? new TdeStorageException(TdeStorageException.Codes.EnvelopeDamaged,
                $"Could not read the envelope of '{Path}' again: {e.Message}", Path, inner: e), SqliteNative.SQLITE_IOERR_LOCK);
            return false;
        }
    }

    /// <summary>
    /// Reads the envelope again. When its DEKs or its active DEK changed (a DEK re-encryption), the
    /// new DEKs are unwrapped, retired ones are wiped, and new pages are sealed under the active one.
    /// True when the DEKs changed.
    /// </summary>
    private bool RefreshKeys()
    {
        // Every write transaction comes here: read into a scratch buffer, and keep it only when it differs.
        var region = _envelopeScratch;
        if (ReadRaw(region, 0) != SqliteNative.SQLITE_OK)
        {
            throw new IOException($"Could not re-read the envelope of '{Path}'.");
        }

        if (region.AsSpan().SequenceEqual(_envelopeRegion))
        {
            return false;
        }

        var current = DatabaseEnvelope.Read(region, Path);
        var versions = current.Deks.Select(d => d.Version).ToList();
        var changed = !(current.ActiveDekVersion == Crypto.ActiveVersion && versions.Count == Crypto.Versions.Count && versions.All(Crypto.Versions.Contains));
        // With the same DEKs the active one's MAC key is held; a new active DEK (a DEK re-encryption)
        // is unwrapped first. Either way the envelope authenticates before anything is sealed under it.
        Authenticate(current).Dispose();
        if (changed)
        {
            Crypto.Update(current.ActiveDekVersion, versions, version =>
            {
                var dek = current.Deks.Single(d => d.Version == version);
                using var key = EnvelopeAuthentication.UnwrapDek(_keys, dek, current, Path);
                var cipher = PageCipher.Create(dek.Suite, key.Span);
                return (cipher, EnvelopeMacKey.Derive(key.Span));
            }, SealCounters.For(current, Path));
            _page1Cached = false;
        }

        (_envelopeScratch, _envelopeRegion) = (_envelopeRegion, region);
        Envelope = current;
        return changed;
    }

    /// <summary>
    /// Checks the MAC of an envelope read from the file (refusing one without a MAC once this
    /// connection has seen one with it) and returns the MAC key of its active DEK, which the caller disposes.
    /// </summary>
    private EnvelopeMacKey Authenticate(DatabaseEnvelope envelope)
    {
        var macKey = EnvelopeAuthentication.Authenticate(envelope, Path, _keys, Crypto, requireMac: _sawAuthenticated);
        _sawAuthenticated |= envelope.Authenticated;
        return macKey;
    }

    /// <summary>
    /// Test seam: called after each envelope write of a seal reservation, with the file and the
    /// reservation, before the write is read back (a test writes there what a racing process would).
    /// </summary>
    internal static Action<string, ulong>? ReservationWritten { get; set; }

    /// <summary>Writes a new envelope that reserves seals up to <paramref name="reserved"/> under the active DEK (see <see cref="DatabaseEnvelope.PersistReservation"/>).</summary>
    private void PersistReservation(ulong reserved) =>
        Envelope = DatabaseEnvelope.PersistReservation(Path, Crypto.ActiveVersion, reserved, ReadEnvelope, Authenticate, (slot, offset) =>
        {
            WriteSlot(slot, offset);
            ReservationWritten?.Invoke(Path, reserved);
        });

    private void WriteSlot(byte[] slot, int offset)
    {
        if (WriteRaw(slot, offset) != SqliteNative.SQLITE_OK)
        {
            throw new IOException($"Could not write the envelope of '{Path}'.");
        }
    }

    // A valid slot (of either age) that carries the empty mark.
    private bool AnySlotSaysEmpty()
    {
        var region = new byte[E];
        if (ReadRaw(region, 0) != SqliteNative.SQLITE_OK)
        {
            throw new IOException($"Could not re-read the envelope of '{Path}'.");
        }

        return DatabaseEnvelope.TryReadSlot(region.AsSpan(0, DatabaseEnvelope.SlotSize))?.Empty == true ||
               DatabaseEnvelope.TryReadSlot(region.AsSpan(DatabaseEnvelope.SlotSize))?.Empty == true;
    }

    private DatabaseEnvelope ReadEnvelope()
    {
        var region = new byte[E];
        if (ReadRaw(region, 0) != SqliteNative.SQLITE_OK)
        {
            throw new IOException($"Could not re-read the envelope of '{Path}'.");
        }

        return DatabaseEnvelope.Read(region, Path);
    }

    protected override void Release()
    {
        Crypto.PersistReservation = null;
        Crypto.Dispose();
        CryptographicOperations.ZeroMemory(_plain);
        CryptographicOperations.ZeroMemory(_page1Plain);
    }
}
