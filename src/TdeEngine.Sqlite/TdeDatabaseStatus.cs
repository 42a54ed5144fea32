using TdeEngine.Storage.Pages;

namespace TdeEngine.Sqlite;

/// <summary>What <c>tde db status</c> reports: the envelope and the page geometry, read without any key.</summary>
public sealed record TdeDatabaseStatus
{
    public required string Path { get; init; }
    public required string DatabaseId { get; init; }
    public required string KmsKeyArn { get; init; }
    public required PageCipherSuite Cipher { get; init; }
    public required int PageSize { get; init; }
    public required int ReservedBytes { get; init; }
    public required long PageCount { get; init; }

    /// <summary>
    /// True when the envelope marks the database empty: created and not written yet (SQLite's first
    /// write transaction writes page 1), or emptied by SQLite. A file without pages that is not marked
    /// empty was truncated (<c>tde db verify</c> reports it).
    /// </summary>
    public bool Empty { get; init; }
    public required uint ActiveDekVersion { get; init; }
    public required ulong EnvelopeSequence { get; init; }

    /// <summary>
    /// True when the envelope carries a MAC (format version 2; checked whenever a DEK is unwrapped,
    /// not by status, which holds no key). False for an envelope written by an earlier build: its
    /// fields are unauthenticated until its next write (the first write transaction, a re-wrap or a re-encryption).
    /// </summary>
    public bool EnvelopeAuthenticated { get; init; }

    /// <summary>
    /// True when, in addition, every DEK is bound to authenticated envelopes by its KMS
    /// EncryptionContext, so the envelope cannot be rewritten in the old format without a MAC.
    /// DEKs made by an earlier build are not bound until <c>tde db rekey</c> replaces them.
    /// </summary>
    public bool EnvelopeDowngradeProtected { get; init; }

    /// <summary>Every DEK in the envelope, with the seals reserved under it and its limit.</summary>
    public required IReadOnlyList<TdeDekStatus> Deks { get; init; }

    /// <summary>How many pages of the database file each DEK version sealed (read from the page trailers).</summary>
    public required IReadOnlyDictionary<uint, long> PagesPerDekVersion { get; init; }
}

/// <summary>One DEK of a database.</summary>
/// <param name="Version">The DEK version.</param>
/// <param name="Cipher">The cipher suite it seals with.</param>
/// <param name="SealsReserved">Pages sealed under it, rounded up to the reservation persisted in the envelope.</param>
/// <param name="SealLimit">How many pages it may seal (AES-GCM random nonces), or <c>ulong.MaxValue</c>.</param>
/// <param name="NearLimit">True once half the limit is used: rotate the DEK.</param>
public sealed record TdeDekStatus(uint Version, PageCipherSuite Cipher, ulong SealsReserved, ulong SealLimit, bool NearLimit);

/// <summary>What <c>tde db verify</c> reports: every page of the file authenticated with the database's DEKs, then SQLite's own check.</summary>
/// <param name="Path">The database file.</param>
/// <param name="PageCount">Pages in the file (a partial last page counts as one).</param>
/// <param name="BadPages">Pages that fail authentication (altered, moved, from another database, or cut short), in order.</param>
/// <param name="IntegrityCheck">What <c>PRAGMA integrity_check</c> said (or why SQLite could not run it), or null when pages failed or are missing (SQLite would stop at the first).</param>
public sealed record TdeDatabaseVerification(string Path, long PageCount, IReadOnlyList<long> BadPages, string? IntegrityCheck)
{
    /// <summary>The page count page 1's header gives (null when page 1 fails, or SQLite would not trust the count); 1 for a file without pages that is not marked empty.</summary>
    public long? HeaderPageCount { get; init; }

    /// <summary>
    /// True when a rollback journal lies beside the file: a write transaction was interrupted (a
    /// crash), and the file holds its pages until SQLite rolls it back, which the next connection
    /// does when it opens the database. Pages it left half written fail here until then.
    /// </summary>
    public bool InterruptedTransaction { get; init; }

    /// <summary>True when the file holds fewer pages than page 1's header counts: it was truncated.</summary>
    public bool Truncated => HeaderPageCount > PageCount;

    /// <summary>True when every page authenticates, none is missing, and SQLite finds the database well formed.</summary>
    public bool Intact => BadPages.Count == 0 && !Truncated && IntegrityCheck == "ok";

    /// <summary>One sentence for people.</summary>
    public string Message => BadPages.Count > 0 || Truncated
        ? (BadPages.Count > 0
            ? $"{BadPages.Count} of {PageCount} pages of '{Path}' fail authentication (altered, moved, cut short, or from another database): {string.Join(", ", BadPages.Take(50))}{(BadPages.Count > 50 ? ", ..." : "")}. "
            : "") +
          (Truncated ? (PageCount == 0
              ? $"'{Path}' is truncated: it holds no page, and its envelope does not say it is an empty database. "
              : $"'{Path}' is truncated: page 1 counts {HeaderPageCount} pages, the file holds {PageCount}. ") : "") +
          (InterruptedTransaction
              ? "A rollback journal lies beside it: a transaction was interrupted. Open the database once (any query) so that SQLite rolls it back, then verify again."
              : "Restore the file from a backup.")
        : IntegrityCheck == "ok"
            ? $"All {PageCount} pages of '{Path}' authenticate, and PRAGMA integrity_check is ok."
            : $"All {PageCount} pages of '{Path}' authenticate, but PRAGMA integrity_check says: {IntegrityCheck}";
}

/// <summary>How far a DEK re-encryption has come.</summary>
/// <param name="PagesDone">Pages checked so far (rewritten, or already under the new DEK).</param>
/// <param name="PagesTotal">Pages to check: those the file had when the new DEK became active (or when this run resumed); in the last report, all the file has then.</param>
/// <param name="PagesRewritten">Pages this run rewrote so far.</param>
/// <param name="DekVersion">The DEK version every page ends under.</param>
/// <param name="Resumed">True when this run finishes one that was interrupted.</param>
public sealed record TdeRekeyProgress(long PagesDone, long PagesTotal, long PagesRewritten, uint DekVersion, bool Resumed);
