using System.Text;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Store;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Keys;

namespace TdeEngine.Objects;

/// <summary>
/// An OSS-style bucket on a local directory with server-side encryption: every object is a sealed
/// object (<see cref="SealedObject"/>) under a fresh data key from the KMS, wrapped by the OSS
/// service key <c>alias/acs/oss</c> (<c>AES256</c>, the default) or by a customer CMK (<c>KMS</c>).
/// </summary>
/// <remarks>
/// <para>Layout: <c>.tde-bucket.json</c> (the config), one file per object named by percent-encoding
/// the object name (see docs/objects.md), and short-lived <c>.tde-tmp-*</c> files while a PutObject
/// or config write is in flight. Object files never start with <c>.</c>.</para>
/// <para>Each object's data key and chunks are bound to the EncryptionContext
/// <c>{"acs:oss:arn":"acs:oss:&lt;region&gt;:&lt;account&gt;:&lt;bucket&gt;/&lt;key&gt;"}</c>, so an object file copied
/// under another name or into another bucket does not open.</para>
/// <para>Thread-safe and multi-process-safe: concurrent calls are fine; two PutObjects of one name
/// race, and the last rename wins, as in OSS. Renames, deletes and re-wraps take the bucket's
/// write lock (<c>.tde-bucket.lock</c>), so a re-wrap never undoes a PutObject or DeleteObject. Streams returned by GetObject are not thread-safe and are owned by the caller.</para>
/// </remarks>
public sealed class LocalBucket
{
    /// <summary>The OSS-managed service key of the account.</summary>
    public const string ServiceKeyAlias = "alias/acs/oss";

    /// <summary>The <c>x-oss-server-side-encryption</c> value for KMS keys.</summary>
    public const string Kms = "KMS";

    /// <summary>The <c>x-oss-server-side-encryption</c> value for the OSS-managed key.</summary>
    public const string Aes256 = "AES256";

    private const string SseAttribute = "x-oss-server-side-encryption";

    private readonly string _directory;
    private readonly IDataKeyProvider _keys;
    private readonly string _regionId;
    private readonly string _accountId;
    private readonly Lock _configLock = new();
    private BucketEncryption _encryption;

    private LocalBucket(string directory, IDataKeyProvider keys, BucketConfig config)
    {
        _directory = directory;
        _keys = keys;
        Name = config.Name;
        _regionId = config.RegionId;
        _accountId = config.AccountId;
        _encryption = config.Encryption;
    }

    /// <summary>The bucket name.</summary>
    public string Name { get; }

    /// <summary>The default encryption of new objects.</summary>
    public BucketEncryption Encryption => Volatile.Read(ref _encryption);

    /// <summary>
    /// Creates a bucket in <paramref name="directory"/> (created if missing) with default encryption
    /// <c>AES256</c>. The config is written atomically.
    /// </summary>
    /// <param name="directory">The folder that holds the bucket.</param>
    /// <param name="bucketName">OSS rules: 3 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit.</param>
    /// <param name="keys">Where data keys come from.</param>
    /// <param name="regionId">The region, for the objects' ARNs (for example <c>cn-hangzhou</c>).</param>
    /// <param name="accountId">The account that owns the bucket.</param>
    public static LocalBucket Create(string directory, string bucketName, IDataKeyProvider keys, string regionId, string accountId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentNullException.ThrowIfNull(bucketName);
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(regionId);
        ArgumentNullException.ThrowIfNull(accountId);
        if (!IsValidBucketName(bucketName))
        {
            throw InvalidParameter($"The bucket name '{bucketName}' is invalid: use 3 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit.");
        }

        if (!IsArnSegment(regionId) || !IsArnSegment(accountId))
        {
            throw InvalidParameter("The region and account must be non-empty and hold only letters, digits and '-' (they are part of the objects' ARNs).");
        }

        var full = Path.GetFullPath(directory);
        Directory.CreateDirectory(full);
        if (File.Exists(Path.Combine(full, BucketConfig.FileName)))
        {
            throw InvalidParameter($"'{full}' already holds a bucket. Open it with LocalBucket.Open, or choose another directory.");
        }

        var config = new BucketConfig(bucketName, regionId, accountId, new BucketEncryption(Aes256, null));
        config.Save(full);
        if (Path.GetDirectoryName(full) is { } parent)
        {
            DirectoryFlush.Flush(parent);   // the new bucket folder itself survives a crash
        }

        return new LocalBucket(full, keys, config);
    }

    /// <summary>Opens the bucket in <paramref name="directory"/>; <c>NoSuchBucket</c> when there is none.</summary>
    public static LocalBucket Open(string directory, IDataKeyProvider keys)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentNullException.ThrowIfNull(keys);
        var full = Path.GetFullPath(directory);
        var bucket = new LocalBucket(full, keys, BucketConfig.Load(full));
        bucket.RemoveStaleTemporaryFiles();
        return bucket;
    }

    /// <summary>How old a temporary file must be before Open treats it as left by a crash.</summary>
    internal static readonly TimeSpan StaleTemporaryAge = TimeSpan.FromHours(24);

    // A crash during a PutObject, a config write or a re-wrap leaves a '.tde-tmp-*' file (never
    // under an object's name). Ones a day old cannot belong to a write still running.
    private void RemoveStaleTemporaryFiles()
    {
        foreach (var path in Directory.EnumerateFiles(_directory, BucketConfig.TempPrefix + "*"))
        {
            if (DateTime.UtcNow - File.GetLastWriteTimeUtc(path) > StaleTemporaryAge)
            {
                TryDelete(path);
            }
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>
    /// OSS PutBucketEncryption: the default for new objects. <c>KMS</c> with a CMK (null: the service
    /// key <c>alias/acs/oss</c>), or <c>AES256</c> (always the service key). Existing objects keep
    /// their key. Anything else: <c>InvalidEncryptionAlgorithmError</c>.
    /// </summary>
    public void PutBucketEncryption(string sseAlgorithm, string? kmsMasterKeyId = null)
    {
        ArgumentNullException.ThrowIfNull(sseAlgorithm);
        var keyId = string.IsNullOrEmpty(kmsMasterKeyId) ? null : kmsMasterKeyId;
        var encryption = sseAlgorithm switch
        {
            Kms => new BucketEncryption(Kms, keyId),
            Aes256 when keyId is null => new BucketEncryption(Aes256, null),
            Aes256 => throw InvalidParameter("KMSMasterKeyID applies only to SSEAlgorithm KMS; AES256 always uses the OSS-managed key."),
            _ => throw InvalidAlgorithm(sseAlgorithm),
        };

        lock (_configLock)
        {
            new BucketConfig(Name, _regionId, _accountId, encryption).Save(_directory);
            Volatile.Write(ref _encryption, encryption);
        }
    }

    /// <summary>
    /// OSS PutObject: seals <paramref name="content"/> (read to its end) into a temp file, fsyncs it,
    /// and renames it over the object, so a crash or a failing source never leaves half an object.
    /// </summary>
    /// <param name="objectKey">The object name (OSS rules; see docs/objects.md for the local length limit).</param>
    /// <param name="content">The plaintext. Need not seek. Not disposed.</param>
    /// <param name="serverSideEncryption"><c>x-oss-server-side-encryption</c>: <c>KMS</c>, <c>AES256</c>, or null for the bucket default.</param>
    /// <param name="kmsKeyId"><c>x-oss-server-side-encryption-key-id</c>: the CMK for <c>KMS</c> (null: <c>alias/acs/oss</c>).</param>
    public ObjectMetadata PutObject(string objectKey, Stream content, string? serverSideEncryption = null, string? kmsKeyId = null)
    {
        var put = PreparePut(objectKey, content, serverSideEncryption, kmsKeyId);
        try
        {
            SealedObjectInfo info;
            using (var file = new FileStream(put.Temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0))
            {
                info = SealedObject.SealCore(content, file, _keys, put.KeyId, put.Context, SealedObject.DefaultChunkSize, put.Attributes);
                file.Flush(flushToDisk: true);
            }

            return CommitPut(objectKey, put, info);
        }
        catch
        {
            TryDelete(put.Temp);   // never hides the error that got us here
            throw;
        }
    }

    /// <summary>
    /// <see cref="PutObject"/> with asynchronous reads of <paramref name="content"/> and writes of the
    /// object file: for sources that refuse synchronous I/O, such as an ASP.NET Core request body.
    /// Cancelled or failed, it leaves no object and no temporary file.
    /// </summary>
    public async Task<ObjectMetadata> PutObjectAsync(string objectKey, Stream content, string? serverSideEncryption = null, string? kmsKeyId = null,
        CancellationToken cancellationToken = default)
    {
        var put = PreparePut(objectKey, content, serverSideEncryption, kmsKeyId);
        try
        {
            SealedObjectInfo info;
            var file = new FileStream(put.Temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0, useAsync: true);
            await using (file.ConfigureAwait(false))
            {
                info = await SealedObject.SealCoreAsync(content, file, _keys, put.KeyId, put.Context, SealedObject.DefaultChunkSize, put.Attributes, cancellationToken)
                    .ConfigureAwait(false);
                file.Flush(flushToDisk: true);
            }

            return CommitPut(objectKey, put, info);
        }
        catch
        {
            TryDelete(put.Temp);   // never hides the error that got us here
            throw;
        }
    }

    // Checks the name and the encryption settings before anything is written; the object is sealed
    // into a temporary file in the bucket and renamed over its name once durable.
    private PendingPut PreparePut(string objectKey, Stream content, string? serverSideEncryption, string? kmsKeyId)
    {
        var path = PathOf(objectKey);
        ArgumentNullException.ThrowIfNull(content);
        var (algorithm, keyId) = ResolveEncryption(serverSideEncryption, kmsKeyId);
        var attributes = EncryptionContext.From([new(SseAttribute, algorithm)]);
        var temp = Path.Combine(_directory, BucketConfig.TempPrefix + Guid.NewGuid().ToString("N"));
        return new PendingPut(path, temp, keyId, ContextOf(objectKey), attributes);
    }

    private ObjectMetadata CommitPut(string objectKey, PendingPut put, SealedObjectInfo info)
    {
        using (BucketWriteLock.Take(_directory))
        {
            File.Move(put.Temp, put.Path, overwrite: true);
            DirectoryFlush.Flush(_directory);
        }

        return ToMetadata(objectKey, info, put.Path);
    }

    private sealed record PendingPut(string Path, string Temp, string KeyId, EncryptionContext Context, EncryptionContext Attributes);

    /// <summary>
    /// OSS HeadObject: the object's metadata from its header, with no KMS call. <c>NoSuchKey</c> if
    /// absent; <c>Tde.InvalidParameter</c> if the file under this name was sealed for another name
    /// (copied or renamed there), as GetObject would say, so its size and ETag are not reported as
    /// this object's.
    /// </summary>
    public ObjectMetadata HeadObject(string objectKey)
    {
        var path = PathOf(objectKey);
        using var file = OpenObjectFile(objectKey, path);
        var info = SealedObject.InspectHeader(file).Info;
        var expected = ContextOf(objectKey);
        if (!info.Context.CanonicalBytes.SequenceEqual(expected.CanonicalBytes))
        {
            throw new TdeStorageException(TdeStorageException.Codes.InvalidParameter,
                $"The file of object '{objectKey}' holds sealed object {info.ObjectId}, bound to {info.Context}, not to {expected}: it was copied or renamed here. Upload the object under this name instead.",
                path);
        }

        return ToMetadata(objectKey, info, path);
    }

    /// <summary>
    /// OSS GetObject: the plaintext as a seekable stream (a <see cref="SealedObjectReader"/>) that the
    /// caller disposes. One KMS Decrypt; its refusals (<c>Rejected.Disabled</c>, …) propagate.
    /// </summary>
    public Stream GetObject(string objectKey)
    {
        var path = PathOf(objectKey);
        var file = OpenObjectFile(objectKey, path);
        try
        {
            return SealedObject.Open(file, _keys, ContextOf(objectKey), leaveOpen: false);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// OSS GetObject with <c>Range: bytes=start-end</c> (inclusive). An end past the object is cut
    /// to its last byte, as HTTP does; a start past the end, a negative start or an end before the
    /// start is <c>Tde.InvalidParameter</c>. Only the chunks of the range are decrypted.
    /// </summary>
    public Stream GetObject(string objectKey, long rangeStart, long rangeEndInclusive)
    {
        var reader = GetObject(objectKey);
        var length = reader.Length;
        if (rangeStart < 0 || rangeEndInclusive < rangeStart || rangeStart >= length)
        {
            reader.Dispose();
            throw InvalidParameter($"The range bytes={rangeStart}-{rangeEndInclusive} is outside object '{objectKey}' of {length} bytes. Ask for 0 <= start <= end, with start < {length}.");
        }

        var end = Math.Min(rangeEndInclusive, length - 1);
        return new RangeStream(reader, rangeStart, end - rangeStart + 1);
    }

    /// <summary>OSS ListObjects: the objects whose name starts with <paramref name="prefix"/>, in UTF-8 byte order. No KMS call.</summary>
    public IReadOnlyList<ObjectMetadata> ListObjects(string? prefix = null)
    {
        var found = new List<(byte[] Order, ObjectMetadata Metadata)>();
        foreach (var path in Directory.EnumerateFiles(_directory))
        {
            var key = ObjectKeyEncoding.Decode(Path.GetFileName(path));
            if (key is null || (prefix is not null && !key.StartsWith(prefix, StringComparison.Ordinal)))
            {
                continue;
            }

            try
            {
                found.Add((Encoding.UTF8.GetBytes(key), HeadObject(key)));
            }
            catch (TdeStorageException e) when (e.Code == TdeStorageException.Codes.NoSuchKey)
            {
                // Deleted while we listed.
            }
            catch (TdeStorageException e) when (e.Code is TdeStorageException.Codes.NotSealedObject or TdeStorageException.Codes.EnvelopeDamaged
                                                          or TdeStorageException.Codes.InvalidParameter)
            {
                // A stray file dropped into the folder, an object whose header is damaged, or one
                // copied here from another name: not listed, so one bad file does not hide the
                // others; HeadObject on its name says which.
            }
        }

        found.Sort(static (a, b) => a.Order.AsSpan().SequenceCompareTo(b.Order));
        return found.ConvertAll(static f => f.Metadata);
    }

    /// <summary>
    /// Re-wraps the object's data key under the current version of <paramref name="destinationKeyId"/>
    /// (KMS ReEncrypt), crash-safe (<see cref="SealedObject.RewrapFile"/>); the content is not
    /// re-encrypted and the ETag stays. OSS has no such call: it is the bucket-side form of a KMS
    /// key rotation or of moving a <c>KMS</c> object to another CMK.
    /// </summary>
    /// <remarks>
    /// An <c>AES256</c> object is under the OSS-managed key by definition (its label is
    /// authenticated in the header): it can only be re-wrapped under <c>alias/acs/oss</c>. To move it
    /// to a CMK, PutObject it again with <c>KMS</c>. <c>NoSuchKey</c> if absent.
    /// </remarks>
    public ObjectMetadata RewrapObject(string objectKey, string destinationKeyId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(destinationKeyId);

        // Under the write lock from the check to the rename: no PutObject or DeleteObject of this
        // name can land in between and be undone by the rename of the re-wrapped copy.
        using var writeLock = BucketWriteLock.Take(_directory);
        var current = HeadObject(objectKey);
        if (current.ServerSideEncryption == Aes256 && destinationKeyId != ServiceKeyAlias)
        {
            throw new TdeStorageException(TdeStorageException.Codes.InvalidParameter,
                $"Object '{objectKey}' is encrypted with AES256, the OSS-managed key {ServiceKeyAlias}, and can only be re-wrapped under {ServiceKeyAlias}. To put it under '{destinationKeyId}', upload it again with x-oss-server-side-encryption KMS.");
        }

        SealedObject.RewrapFile(PathOf(objectKey), _keys, destinationKeyId);
        return HeadObject(objectKey);
    }

    /// <summary>OSS DeleteObject. Deleting a missing object is not an error.</summary>
    public void DeleteObject(string objectKey)
    {
        var path = PathOf(objectKey);
        using var writeLock = BucketWriteLock.Take(_directory);
        if (File.Exists(path))
        {
            File.Delete(path);
            DirectoryFlush.Flush(_directory);
        }
    }

    /// <summary>
    /// The file that holds <paramref name="objectKey"/> (whether or not it exists), always directly
    /// inside the bucket directory. <c>InvalidObjectName</c> for a name OSS or the file system refuses.
    /// </summary>
    public string PathOf(string objectKey)
    {
        var path = Path.Combine(_directory, ObjectKeyEncoding.Encode(objectKey));
        // The encoding cannot produce a separator, "." or ".."; this check only guards against a bug in it.
        if (!string.Equals(Path.GetDirectoryName(Path.GetFullPath(path)), _directory.TrimEnd(Path.DirectorySeparatorChar), StringComparison.Ordinal))
        {
            throw new TdeStorageException(TdeStorageException.Codes.InvalidObjectName, "The object name maps outside the bucket directory.");
        }

        return path;
    }

    private EncryptionContext ContextOf(string objectKey) =>
        EncryptionContext.From([new("acs:oss:arn", $"acs:oss:{_regionId}:{_accountId}:{Name}/{objectKey}")]);

    private (string Algorithm, string KeyId) ResolveEncryption(string? serverSideEncryption, string? kmsKeyId)
    {
        var keyId = string.IsNullOrEmpty(kmsKeyId) ? null : kmsKeyId;
        switch (serverSideEncryption)
        {
            case null when keyId is not null:
                throw InvalidParameter("x-oss-server-side-encryption-key-id needs x-oss-server-side-encryption: KMS.");
            case null:
                var encryption = Encryption;
                return (encryption.SseAlgorithm, encryption.SseAlgorithm == Kms ? encryption.KmsMasterKeyId ?? ServiceKeyAlias : ServiceKeyAlias);
            case Aes256 when keyId is not null:
                throw InvalidParameter("x-oss-server-side-encryption-key-id applies only to KMS; AES256 always uses the OSS-managed key.");
            case Aes256:
                return (Aes256, ServiceKeyAlias);
            case Kms:
                return (Kms, keyId ?? ServiceKeyAlias);
            default:
                throw InvalidAlgorithm(serverSideEncryption);
        }
    }

    private static FileStream OpenObjectFile(string objectKey, string path)
    {
        try
        {
            // Unbuffered: the reader seeks to each chunk and reads it whole. Delete stays possible while a GET reads.
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 0);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new TdeStorageException(TdeStorageException.Codes.NoSuchKey,
                $"The object '{objectKey}' does not exist. List the bucket's objects with ListObjects.", path);
        }
    }

    private static ObjectMetadata ToMetadata(string objectKey, SealedObjectInfo info, string path)
    {
        string algorithm = Kms;
        foreach (var pair in info.Attributes.Pairs)
        {
            if (pair.Key == SseAttribute)
            {
                algorithm = pair.Value;
            }
        }

        return new ObjectMetadata(objectKey, info.PlaintextLength, algorithm, info.KmsKeyArn,
            new DateTimeOffset(File.GetLastWriteTimeUtc(path), TimeSpan.Zero), info.ObjectId.ToUpperInvariant());
    }

    private static bool IsValidBucketName(string name)
    {
        if (name.Length is < 3 or > 63 || name[0] == '-' || name[^1] == '-')
        {
            return false;
        }

        foreach (var c in name)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9') or '-'))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsArnSegment(string value)
    {
        if (value.Length == 0)
        {
            return false;
        }

        foreach (var c in value)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '-'))
            {
                return false;
            }
        }

        return true;
    }

    private static TdeStorageException InvalidParameter(string message) => new(TdeStorageException.Codes.InvalidParameter, message);

    private static TdeStorageException InvalidAlgorithm(string algorithm) => new(TdeStorageException.Codes.InvalidEncryptionAlgorithm,
        $"The server-side encryption algorithm '{algorithm}' is not supported. Use KMS (with an optional CMK) or AES256.");
}
