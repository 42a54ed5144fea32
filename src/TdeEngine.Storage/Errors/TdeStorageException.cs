namespace TdeEngine.Storage.Errors;

/// <summary>
/// A failure of the storage engine, with a stable code, the file and (where it applies) the page.
/// SQLite reports these to the application as a <c>SqliteException</c> with an extended result
/// code; <c>TdeSqlite.LastError</c> gives this richer exception for the same failure.
/// </summary>
public sealed class TdeStorageException : Exception
{
    public TdeStorageException(string code, string message, string? file = null, long? pageNumber = null, Exception? inner = null)
        : base(message, inner)
    {
        Code = code;
        File = file;
        PageNumber = pageNumber;
    }

    /// <summary>A stable code from <see cref="Codes"/>, or the KMS error code for key failures.</summary>
    public string Code { get; }

    /// <summary>The file involved.</summary>
    public string? File { get; }

    /// <summary>The page number (1-based) for page failures; the chunk index (0-based) of a sealed object, or the sector index of a disk image.</summary>
    public long? PageNumber { get; }

    /// <summary>
    /// <c>Tde.NotTdeDatabase</c> for a database path that is not a file: it does not exist, or it is a folder.
    /// </summary>
    public static TdeStorageException NoDatabaseFile(string path) => new(Codes.NotTdeDatabase,
        Directory.Exists(path) ? $"'{path}' is a folder, not a database file." : $"'{path}' does not exist.", path);

    /// <summary>Stable error codes of the storage engine.</summary>
    public static class Codes
    {
        public const string PageAuthenticationFailed = "Tde.PageAuthenticationFailed";
        public const string NotTdeDatabase = "Tde.NotTdeDatabase";
        public const string PlaintextDatabase = "Tde.PlaintextDatabase";
        public const string EnvelopeDamaged = "Tde.EnvelopeDamaged";
        public const string EnvelopeKeyMismatch = "Tde.EnvelopeKeyMismatch";
        public const string EnvelopeTampered = "Tde.EnvelopeTampered";
        public const string KeyUnavailable = "Tde.KeyUnavailable";
        public const string KmsUnreachable = "Tde.KmsUnreachable";
        public const string NonceBudgetExhausted = "Tde.NonceBudgetExhausted";
        public const string UnsupportedOperation = "Tde.UnsupportedOperation";
        public const string NotRegistered = "Tde.NotRegistered";
        public const string InvalidParameter = "Tde.InvalidParameter";

        // Sealed objects (TdeEngine.Objects). OSS's own codes where OSS has one.
        public const string NotSealedObject = "Tde.NotSealedObject";
        public const string ObjectAuthenticationFailed = "Tde.ObjectAuthenticationFailed";
        public const string NoSuchKey = "NoSuchKey";
        public const string NoSuchBucket = "NoSuchBucket";
        public const string InvalidObjectName = "InvalidObjectName";
        public const string InvalidEncryptionAlgorithm = "InvalidEncryptionAlgorithmError";

        // Encrypted disk images (TdeEngine.Disks).
        public const string NotTdeDisk = "Tde.NotTdeDisk";
        public const string DiskNotFound = "Tde.DiskNotFound";
        public const string DiskInUse = "Tde.DiskInUse";
    }
}
