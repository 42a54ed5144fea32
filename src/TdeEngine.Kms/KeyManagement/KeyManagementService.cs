using System.Security.Cryptography;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.Instances;
using TdeEngine.Kms.Protection;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Kms.Secrets;
using TdeEngine.Kms.Store;

namespace TdeEngine.Kms.KeyManagement;

/// <summary>
/// The KMS core: keys with versions, aliases, tags and a lifecycle, instances with quotas and QPS
/// budgets, and envelope encryption, with the semantics of the Alibaba Cloud KMS OpenAPI
/// 2016-01-20. The OpenAPI surface (<see cref="Api.KmsApi"/>), the CLI and the storage engine all
/// call this one implementation.
/// </summary>
/// <remarks>
/// Thread-safe, and safe to use from several processes over the same <see cref="KmsOptions.Home"/>.
/// Every operation takes a <see cref="KmsCallContext"/> that decides the account it acts in.
/// Plaintext results are <see cref="PlaintextResult"/>s the caller disposes.
/// </remarks>
public sealed class KeyManagementService : IDisposable
{
    /// <summary>Largest plaintext Encrypt accepts (6 KiB).</summary>
    public const int MaxEncryptPlaintext = 6 * 1024;

    private const int MaxTagsPerKey = 20;
    private const int MaxDescription = 8192;
    private static readonly TimeSpan MinRotation = TimeSpan.FromDays(7);
    private static readonly TimeSpan MaxRotation = TimeSpan.FromDays(365);

    private readonly SqliteKeyStore _store;
    private readonly KeyRing _ring;
    private readonly InstanceThrottle _throttle;
    private readonly TimeProvider _time;
    private readonly IDisposable? _ownedRoot;
    private readonly IRootKeyProvider _root;

    private KeyManagementService(KmsOptions options, SqliteKeyStore store, IReadOnlyDictionary<string, IKeyProtectionBackend> backends,
        IRootKeyProvider root, IDisposable? ownedRoot)
    {
        _root = root;
        Options = options;
        _store = store;
        _time = options.TimeProvider;
        _ring = new KeyRing(store, backends, _time, options.StoreRefreshInterval);
        _throttle = new InstanceThrottle(_time);
        _ownedRoot = ownedRoot;
    }

    /// <summary>The options this KMS runs with.</summary>
    public KmsOptions Options { get; }

    /// <summary>The region this KMS serves.</summary>
    public string RegionId => Options.RegionId;

    /// <summary>The ARN of key <paramref name="keyId"/> of <paramref name="accountId"/> in this KMS's region.</summary>
    public string KeyArn(string accountId, string keyId) => KeyIdentifiers.KeyArn(RegionId, accountId, keyId);

    /// <summary>
    /// Opens (creating when absent) the KMS under <see cref="KmsOptions.Home"/>: <c>kms.db</c> and, unless
    /// <paramref name="rootKey"/> is given, the root key file <c>root.key</c>. Extra backends (an HSM)
    /// are added by their <see cref="IKeyProtectionBackend.ProtectionLevel"/>.
    /// </summary>
    public static KeyManagementService Open(KmsOptions options, IRootKeyProvider? rootKey = null,
        IEnumerable<IKeyProtectionBackend>? additionalBackends = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        CreatePrivateDirectory(options.Home);
        FileRootKeyProvider? owned = null;
        if (rootKey is null)
        {
            owned = FileRootKeyProvider.OpenOrCreate(Path.Combine(options.Home, "root.key"));
            rootKey = owned;
        }

        var backends = new Dictionary<string, IKeyProtectionBackend>(StringComparer.Ordinal);
        var software = new SoftwareKeyProtectionBackend(rootKey);
        backends[software.ProtectionLevel] = software;
        foreach (var backend in additionalBackends ?? [])
        {
            backends[backend.ProtectionLevel] = backend;
        }

        var store = new SqliteKeyStore(Path.Combine(options.Home, "kms.db"));
        return new KeyManagementService(options, store, backends, rootKey, owned);
    }

    // ================================================================ instances

    /// <summary>
    /// CreateKmsInstance (a TdeEngine action): a software or hardware instance with a key quota
    /// (KeyNum 100–100000, default 1000) and a QPS budget (Spec 200, 1000, 2000 or 4000, default 1000).
    /// </summary>
    public KmsInstanceInfo CreateKmsInstance(KmsCallContext context, string productType, int? keyNum = null, int? spec = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var type = productType switch
        {
            "software" => "software",
            "hardware" => "hardware",
            _ => throw KmsErrors.InvalidParameter("ProductType", "use software or hardware."),
        };
        var num = keyNum ?? 1000;
        if (num is < 100 or > 100000)
        {
            throw KmsErrors.InvalidParameter("KeyNum", "an instance holds 100 to 100000 keys.");
        }

        var qps = spec ?? 1000;
        if (qps is not (200 or 1000 or 2000 or 4000))
        {
            throw KmsErrors.InvalidParameter("Spec", "the computing spec is 200, 1000, 2000 or 4000 (QPS).");
        }

        if (type == "hardware" && !_ring.HasBackend("HSM"))
        {
            throw KmsErrors.HsmNotConfigured();
        }

        var record = new KmsInstanceRecord(KeyIdentifiers.NewInstanceId(), context.AccountId, RegionId, type, num, qps, _time.GetUtcNow());
        _store.InsertInstance(record);
        return ToInfo(record);
    }

    /// <summary>ListKmsInstances.</summary>
    public Page<KmsInstanceInfo> ListKmsInstances(KmsCallContext context, int pageNumber = 1, int pageSize = 10) =>
        Paginate(_store.ListInstances(context.AccountId, RegionId).Select(ToInfo).ToList(), pageNumber, pageSize);

    // ================================================================ keys

    /// <summary>CreateKey.</summary>
    public KeyMetadata CreateKey(KmsCallContext context, CreateKeyRequest request)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(request);
        var description = request.Description ?? "";
        CheckDescription(description);
        var keySpec = request.KeySpec ?? "Aliyun_AES_256";
        if (keySpec != "Aliyun_AES_256")
        {
            throw KmsErrors.InvalidParameter("KeySpec", "TdeEngine supports Aliyun_AES_256 for envelope keys.");
        }

        var usage = request.KeyUsage ?? "ENCRYPT/DECRYPT";
        if (usage != "ENCRYPT/DECRYPT")
        {
            throw KmsErrors.InvalidParameter("KeyUsage", "Aliyun_AES_256 keys are used for ENCRYPT/DECRYPT.");
        }

        var origin = request.Origin ?? "Aliyun_KMS";
        if (origin is not ("Aliyun_KMS" or "EXTERNAL"))
        {
            throw KmsErrors.InvalidParameter("Origin", "use Aliyun_KMS (material made by the KMS) or EXTERNAL (material you import).");
        }

        KmsInstanceRecord? instance = null;
        string protection;
        if (request.DKMSInstanceId is { Length: > 0 } instanceId)
        {
            instance = _store.GetInstance(instanceId);
            if (instance is null || instance.AccountId != context.AccountId || instance.RegionId != RegionId)
            {
                throw KmsErrors.InstanceNotFound(instanceId);
            }

            protection = instance.ProductType == "hardware" ? "HSM" : "SOFTWARE";
            if (request.ProtectionLevel is { } requested && requested != protection)
            {
                throw KmsErrors.InvalidParameter("ProtectionLevel",
                    $"instance {instanceId} is of the {instance.ProductType} type, so its keys are {protection}-protected.");
            }
        }
        else
        {
            protection = request.ProtectionLevel ?? "SOFTWARE";
            if (protection is not ("SOFTWARE" or "HSM"))
            {
                throw KmsErrors.InvalidParameter("ProtectionLevel", "use SOFTWARE or HSM.");
            }
        }

        var backend = _ring.Backend(protection);
        if (request.EnableAutomaticRotation && origin == "EXTERNAL")
        {
            throw KmsErrors.UnsupportedOperation("automatic rotation of keys with imported (EXTERNAL) material; rotate by creating a new key.");
        }

        TimeSpan? interval = null;
        if (request.EnableAutomaticRotation)
        {
            interval = CheckRotationInterval(request.RotationInterval);
        }

        var tags = CheckTags(request.Tags);
        var now = _time.GetUtcNow();
        var keyId = instance is null ? KeyIdentifiers.NewDefaultKeyId() : KeyIdentifiers.NewInstanceKeyId();
        KeyVersionRecord? version = null;
        if (origin == "Aliyun_KMS")
        {
            var versionId = KeyIdentifiers.NewKeyVersionId();
            version = new KeyVersionRecord(keyId, versionId, now, backend.CreateMaterial(new KeyVersionRef(keyId, versionId, instance?.InstanceId)));
        }

        var key = new KeyRecord
        {
            KeyId = keyId,
            AccountId = context.AccountId,
            RegionId = RegionId,
            Description = description,
            KeySpec = keySpec,
            KeyUsage = usage,
            Origin = origin,
            ProtectionLevel = protection,
            Creator = context.AccountId,
            CreationDate = now,
            KeyState = version is null ? KeyStates.PendingImport : KeyStates.Enabled,
            PrimaryKeyVersion = version?.KeyVersionId,
            AutomaticRotation = interval is not null,
            RotationIntervalSeconds = (long?)interval?.TotalSeconds,
            LastRotationDate = version is null ? null : now,
            NextRotationDate = interval is null ? null : now + interval.Value,
            DkmsInstanceId = instance?.InstanceId,
        };
        _store.InsertKey(key, version, tags.Select(t => new TagRecord(keyId, t.Key, t.Value)).ToList(), instance);
        return ToMetadata(key);
    }

    /// <summary>DescribeKey. Accepts a key id, key ARN, alias or alias ARN.</summary>
    public KeyMetadata DescribeKey(KmsCallContext context, string keyId) => ToMetadata(Resolve(context, keyId).Record);

    /// <summary>ListKeys, in creation order. <paramref name="filter"/> (optional) selects keys.</summary>
    public Page<KeyListEntry> ListKeys(KmsCallContext context, int pageNumber = 1, int pageSize = 10, Func<KeyMetadata, bool>? filter = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var now = _time.GetUtcNow();
        var keys = _store.ListKeys(context.AccountId, RegionId)
            .Where(k => !IsDeletionDue(k, now))
            .Select(ToMetadata)
            .Where(m => filter is null || filter(m))
            .Select(m => new KeyListEntry(m.KeyId, m.Arn))
            .ToList();
        return Paginate(keys, pageNumber, pageSize, maxPageSize: 100);
    }

    /// <summary>How many key-version ciphers (unwrapped material) this process holds open; for tests.</summary>
    internal int OpenCipherCount => _ring.OpenCipherCount;

    /// <summary>UpdateKeyDescription.</summary>
    public void UpdateKeyDescription(KmsCallContext context, string keyId, string description)
    {
        CheckDescription(description);
        Mutate(context, keyId, "UpdateKeyDescription", k => k with { Description = description });
    }

    /// <summary>EnableKey: Disabled or Enabled to Enabled.</summary>
    public void EnableKey(KmsCallContext context, string keyId) => Mutate(context, keyId, "EnableKey", k => EffectiveState(k) switch
    {
        KeyStates.Enabled => k,
        KeyStates.Disabled => k with { KeyState = KeyStates.Enabled },
        var state => throw KmsErrors.StateModifiedFailed(k.KeyId, state, "EnableKey"),
    });

    /// <summary>DisableKey: Enabled or Disabled to Disabled. A disabled key refuses every cryptographic call.</summary>
    public void DisableKey(KmsCallContext context, string keyId) => Mutate(context, keyId, "DisableKey", k => EffectiveState(k) switch
    {
        KeyStates.Disabled => k,
        KeyStates.Enabled => k with { KeyState = KeyStates.Disabled },
        var state => throw KmsErrors.StateModifiedFailed(k.KeyId, state, "DisableKey"),
    });

    /// <summary>ScheduleKeyDeletion with a window of 7–366 days. Returns the deletion date.</summary>
    public DateTimeOffset ScheduleKeyDeletion(KmsCallContext context, string keyId, int pendingWindowInDays)
    {
        if (pendingWindowInDays is < 7 or > 366)
        {
            throw KmsErrors.InvalidParameter("PendingWindowInDays", "the deletion window is 7 to 366 days.");
        }

        var updated = Mutate(context, keyId, "ScheduleKeyDeletion", k =>
        {
            if (k.KeyState == KeyStates.PendingDeletion)
            {
                throw KmsErrors.StateModifiedFailed(k.KeyId, k.KeyState, "ScheduleKeyDeletion");
            }

            if (k.DeletionProtection)
            {
                throw KmsErrors.DeletionProtected(k.KeyId);
            }

            return k with { KeyState = KeyStates.PendingDeletion, DeleteDate = _time.GetUtcNow().AddDays(pendingWindowInDays) };
        });
        return updated.DeleteDate!.Value;
    }

    /// <summary>
    /// CancelKeyDeletion: back to Enabled, or to PendingImport for an EXTERNAL key without usable
    /// material (never imported, deleted with DeleteKeyMaterial, or expired).
    /// </summary>
    public void CancelKeyDeletion(KmsCallContext context, string keyId)
    {
        var cached = Resolve(context, keyId);
        var primary = cached.Record.PrimaryKeyVersion is { } id ? cached.ById.GetValueOrDefault(id) : null;
        var hasMaterial = primary is { Material.Length: > 0 };
        Mutate(context, keyId, "CancelKeyDeletion", k =>
            k.KeyState != KeyStates.PendingDeletion
                ? throw KmsErrors.StateModifiedFailed(k.KeyId, k.KeyState, "CancelKeyDeletion")
                : k with
                {
                    KeyState = hasMaterial && !(k.MaterialExpireTime <= _time.GetUtcNow()) ? KeyStates.Enabled : KeyStates.PendingImport,
                    DeleteDate = null,
                });
    }

    /// <summary>SetDeletionProtection on the key named by its ARN.</summary>
    public void SetDeletionProtection(KmsCallContext context, string protectedResourceArn, bool enable, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        // Only a key id may follow key/: an alias (key/alias/x) or a nested ARN would be resolved to a
        // key other than the one the ARN names, which is what RAM authorized.
        if (!KeyIdentifiers.TryParseArn(protectedResourceArn, RegionId, out var account, out var resource) ||
            !resource.StartsWith("key/", StringComparison.Ordinal) || resource.Length == "key/".Length ||
            !resource["key/".Length..].All(ch => char.IsAsciiLetterOrDigit(ch) || ch == '-'))
        {
            throw KmsErrors.InvalidParameter("ProtectedResourceArn", "pass the key ARN, acs:kms:<region>:<account>:key/<keyId>, as DescribeKey returns it (not an alias).");
        }

        if (account != context.AccountId)
        {
            throw KmsErrors.ResourceNotFound(protectedResourceArn);
        }

        Mutate(context, resource["key/".Length..], "SetDeletionProtection", k => k.KeyState == KeyStates.PendingDeletion
            ? throw KmsErrors.StateModifiedFailed(k.KeyId, k.KeyState, "SetDeletionProtection")
            : k with { DeletionProtection = enable, DeletionProtectionDescription = enable ? description : null });
    }

    // ================================================================ aliases

    /// <summary>CreateAlias. The name is unique in the account and region; <c>alias/acs/</c> is reserved.</summary>
    public void CreateAlias(KmsCallContext context, string aliasName, string keyId)
    {
        CheckUserAlias(aliasName);
        var key = Resolve(context, keyId).Record;
        RefuseServiceKey(key, "CreateAlias");
        if (key.KeyState == KeyStates.PendingDeletion)
        {
            throw KmsErrors.StateModifiedFailed(key.KeyId, key.KeyState, "CreateAlias");
        }

        if (!_store.InsertAlias(new AliasRecord(context.AccountId, RegionId, aliasName, key.KeyId)))
        {
            // Scheduled for deletion or purged by another caller since it was resolved.
            throw KmsErrors.StateModifiedFailed(key.KeyId, KeyStates.PendingDeletion, "CreateAlias");
        }

        _ring.InvalidateAliases();
    }

    /// <summary>UpdateAlias: points an existing alias at another key.</summary>
    public void UpdateAlias(KmsCallContext context, string aliasName, string keyId)
    {
        CheckUserAlias(aliasName);
        var key = Resolve(context, keyId).Record;
        RefuseServiceKey(key, "UpdateAlias");
        if (key.KeyState == KeyStates.PendingDeletion)
        {
            throw KmsErrors.PendingDeletion(key.KeyId);
        }

        switch (_store.UpdateAlias(new AliasRecord(context.AccountId, RegionId, aliasName, key.KeyId)))
        {
            case null: throw KmsErrors.AliasNotFound(aliasName);
            case false: throw KmsErrors.PendingDeletion(key.KeyId);   // scheduled or purged meanwhile
        }

        _ring.InvalidateAliases();
    }

    /// <summary>DeleteAlias.</summary>
    public void DeleteAlias(KmsCallContext context, string aliasName)
    {
        ArgumentNullException.ThrowIfNull(context);
        CheckUserAlias(aliasName);
        if (!_store.DeleteAlias(context.AccountId, RegionId, aliasName))
        {
            throw KmsErrors.AliasNotFound(aliasName);
        }

        _ring.InvalidateAliases();
    }

    /// <summary>ListAliases, by name.</summary>
    public Page<AliasInfo> ListAliases(KmsCallContext context, int pageNumber = 1, int pageSize = 10) =>
        Paginate(_store.ListAliases(context.AccountId, RegionId).Select(a => ToInfo(a)).ToList(), pageNumber, pageSize);

    /// <summary>ListAliasesByKeyId.</summary>
    public Page<AliasInfo> ListAliasesByKeyId(KmsCallContext context, string keyId, int pageNumber = 1, int pageSize = 10)
    {
        var key = Resolve(context, keyId).Record;
        return Paginate(_store.ListAliases(context.AccountId, RegionId, key.KeyId).Select(a => ToInfo(a)).ToList(), pageNumber, pageSize);
    }

    // ================================================================ tags

    /// <summary>TagResource: adds or overwrites tags (at most 20 per key).</summary>
    public void TagResource(KmsCallContext context, string keyId, IReadOnlyList<KeyValuePair<string, string>> tags)
    {
        var checkedTags = CheckTags(tags);
        if (checkedTags.Count == 0)
        {
            throw KmsErrors.MissingParameter("Tags");
        }

        var key = Resolve(context, keyId).Record;
        RefuseServiceKey(key, "TagResource");
        _store.SetTags(key.KeyId, checkedTags.Select(t => new TagRecord(key.KeyId, t.Key, t.Value)).ToList(), MaxTagsPerKey);
        _ring.Invalidate(key.KeyId);
    }

    /// <summary>UntagResource: removes tags by key; unknown tag keys are ignored.</summary>
    public void UntagResource(KmsCallContext context, string keyId, IReadOnlyList<string> tagKeys)
    {
        ArgumentNullException.ThrowIfNull(tagKeys);
        if (tagKeys.Count == 0)
        {
            throw KmsErrors.MissingParameter("TagKeys");
        }

        var key = Resolve(context, keyId).Record;
        RefuseServiceKey(key, "UntagResource");
        _store.RemoveTags(key.KeyId, tagKeys);
        _ring.Invalidate(key.KeyId);
    }

    /// <summary>ListResourceTags.</summary>
    public IReadOnlyList<TagInfo> ListResourceTags(KmsCallContext context, string keyId)
    {
        var key = Resolve(context, keyId);
        return key.Tags(() => _store.ListTags(key.Record.KeyId).Select(t => new TagInfo(t.KeyId, t.TagKey, t.TagValue)).ToList());
    }

    // ================================================================ versions and rotation

    /// <summary>CreateKeyVersion: new material becomes the primary version; old versions keep decrypting.</summary>
    public KeyVersionInfo CreateKeyVersion(KmsCallContext context, string keyId)
    {
        var key = Resolve(context, keyId).Record;
        RefuseServiceKey(key, "CreateKeyVersion");
        var version = AddVersion(key.KeyId, manual: true);
        return new KeyVersionInfo(version.KeyId, version.KeyVersionId, version.CreationDate);
    }

    /// <summary>ListKeyVersions, oldest first.</summary>
    public Page<KeyVersionInfo> ListKeyVersions(KmsCallContext context, string keyId, int pageNumber = 1, int pageSize = 10)
    {
        var key = Resolve(context, keyId);
        return Paginate(key.Versions.Select(v => new KeyVersionInfo(v.KeyId, v.KeyVersionId, v.CreationDate)).ToList(), pageNumber, pageSize);
    }

    /// <summary>DescribeKeyVersion.</summary>
    public KeyVersionInfo DescribeKeyVersion(KmsCallContext context, string keyId, string keyVersionId)
    {
        var key = Resolve(context, keyId);
        return key.ById.TryGetValue(keyVersionId, out var v)
            ? new KeyVersionInfo(v.KeyId, v.KeyVersionId, v.CreationDate)
            : throw KmsErrors.KeyVersionNotFound(key.Record.KeyId, keyVersionId);
    }

    /// <summary>UpdateRotationPolicy: automatic rotation every 7–365 days, carried out by <see cref="RunHousekeeping"/>.</summary>
    public void UpdateRotationPolicy(KmsCallContext context, string keyId, bool enable, TimeSpan? interval)
    {
        var checkedInterval = enable ? CheckRotationInterval(interval) : (TimeSpan?)null;
        Mutate(context, keyId, "UpdateRotationPolicy", k =>
        {
            if (k.Origin == "EXTERNAL")
            {
                throw KmsErrors.UnsupportedOperation("automatic rotation of keys with imported (EXTERNAL) material.");
            }

            if (checkedInterval is null)
            {
                return k with { AutomaticRotation = false, NextRotationDate = null };
            }

            if (EffectiveState(k) != KeyStates.Enabled)
            {
                // As Alibaba: rotation is configured on Enabled keys only (turning it off always works).
                throw KmsErrors.StateModifiedFailed(k.KeyId, EffectiveState(k), "UpdateRotationPolicy");
            }

            var from = k.LastRotationDate ?? k.CreationDate;
            return k with
            {
                AutomaticRotation = true,
                RotationIntervalSeconds = (long)checkedInterval.Value.TotalSeconds,
                NextRotationDate = from + checkedInterval.Value,
            };
        });
    }

    /// <summary>
    /// Runs the time-driven parts of the lifecycle as of the <see cref="KmsOptions.TimeProvider"/>'s
    /// now: deletes keys whose deletion window has passed, and rotates keys whose rotation is due.
    /// Safe to call from several processes at once. Returns what it did.
    /// </summary>
    public HousekeepingResult RunHousekeeping()
    {
        var now = _time.GetUtcNow();
        var deleted = new List<string>();
        foreach (var keyId in _store.KeysDueForDeletion(now))
        {
            if (Purge(keyId, now))
            {
                deleted.Add(keyId);
            }
        }

        var expired = new List<string>();
        foreach (var keyId in _store.KeysWithExpiredMaterial(now))
        {
            // As Alibaba: when imported material expires, the KMS deletes it; the key waits for it again.
            if (_ring.GetKey(keyId) is { } key && key.Record.MaterialExpireTime <= now)
            {
                DestroyImportedMaterial(key);
                expired.Add(keyId);
            }
        }

        RemoveImportTokens(now, keyId: null);
        var rotated = new List<string>();
        foreach (var keyId in _store.KeysDueForRotation(now))
        {
            try
            {
                AddVersion(keyId, manual: false);
                rotated.Add(keyId);
            }
            catch (KmsException)
            {
                // Another process rotated it first, or it changed state meanwhile: nothing is due any more.
            }
        }

        return new HousekeepingResult(deleted, rotated, expired);
    }

    // ================================================================ BYOK (imported key material)

    /// <summary>
    /// GetParametersForImport: a fresh RSA key pair (RSA_2048 or RSA_3072) whose private key the KMS
    /// keeps, wrapped by the root key, for 24 hours; the caller wraps 32 bytes of material with the
    /// public key (RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1) and imports it with the token.
    /// </summary>
    public ImportParameters GetParametersForImport(KmsCallContext context, string keyId, string wrappingAlgorithm, string wrappingKeySpec)
    {
        var key = Resolve(context, keyId).Record;
        RefuseServiceKey(key, "GetParametersForImport");
        if (key.Origin != "EXTERNAL")
        {
            throw KmsErrors.UnsupportedOrigin(key.KeyId, "GetParametersForImport");
        }

        _ = Padding(wrappingAlgorithm);
        var bits = wrappingKeySpec switch
        {
            "RSA_2048" => 2048,
            "RSA_3072" => 3072,
            _ => throw KmsErrors.InvalidParameter("WrappingKeySpec", "use RSA_2048 or RSA_3072."),
        };

        var token = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
        var expires = _time.GetUtcNow().AddHours(24);
        if (_ring.Backend(key.ProtectionLevel) is IKeyImportBackend device)
        {
            // The wrapping pair lives in the device; the store keeps only a reference to its private key.
            var (publicKey, reference) = device.CreateWrappingKey(bits, token);
            _store.InsertImportToken(new ImportTokenRecord(token, key.KeyId, wrappingAlgorithm, wrappingKeySpec, expires, reference));
            return new ImportParameters(key.KeyId, token, publicKey, expires);
        }

        using var rsa = RSA.Create(bits);
        var privateKey = rsa.ExportPkcs8PrivateKey();
        try
        {
            _store.InsertImportToken(new ImportTokenRecord(token, key.KeyId, wrappingAlgorithm, wrappingKeySpec, expires,
                _root.Wrap(privateKey, ImportTokenContext(token))));
            return new ImportParameters(key.KeyId, token, rsa.ExportSubjectPublicKeyInfo(), expires);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(privateKey);
        }
    }

    /// <summary>
    /// ImportKeyMaterial: unwraps the material with the token's private key, checks that it is 32
    /// bytes and, for a key that had material before, that it is the same material; the key becomes
    /// Enabled (until <paramref name="keyMaterialExpireUnix"/>, if given).
    /// </summary>
    public void ImportKeyMaterial(KmsCallContext context, string keyId, ReadOnlySpan<byte> encryptedKeyMaterial, string importToken, long? keyMaterialExpireUnix)
    {
        var cached = Resolve(context, keyId);
        var key = cached.Record;
        RefuseServiceKey(key, "ImportKeyMaterial");
        if (key.Origin != "EXTERNAL")
        {
            throw KmsErrors.UnsupportedOrigin(key.KeyId, "ImportKeyMaterial");
        }

        if (key.KeyState == KeyStates.PendingDeletion)
        {
            throw KmsErrors.StateModifiedFailed(key.KeyId, key.KeyState, "ImportKeyMaterial");
        }

        var token = _store.GetImportToken(importToken);
        if (token is null || token.KeyId != key.KeyId)
        {
            throw KmsErrors.InvalidImportToken(key.KeyId);
        }

        var now = _time.GetUtcNow();
        if (token.ExpireTime <= now)
        {
            throw KmsErrors.ExpiredImportToken();
        }

        DateTimeOffset? expiry = keyMaterialExpireUnix switch
        {
            null or 0 => null,
            < 0 or > 253402300799 => throw KmsErrors.InvalidParameter("KeyMaterialExpireUnix",
                "a Unix time in seconds from now to 253402300799 (9999-12-31T23:59:59Z), or 0 for material that never expires."),
            var seconds => DateTimeOffset.FromUnixTimeSeconds(seconds.Value),
        };
        if (expiry <= now)
        {
            throw KmsErrors.InvalidParameter("KeyMaterialExpireUnix", "the expiry must be in the future (or 0 for material that never expires).");
        }

        var existing = cached.Versions.FirstOrDefault();
        var versionId = existing?.KeyVersionId ?? KeyIdentifiers.NewKeyVersionId();
        var reference = new KeyVersionRef(key.KeyId, versionId, key.DkmsInstanceId);
        var backend = _ring.Backend(key.ProtectionLevel);
        byte[] persisted;
        string fingerprint;
        if (backend is IKeyImportBackend device)
        {
            if (existing is not null && existing.Material.Length > 0)
            {
                throw KmsErrors.InvalidKeyMaterial("this key already holds its material; call DeleteKeyMaterial before importing it again.");
            }

            byte[] checkValue;
            try
            {
                (persisted, checkValue) = device.UnwrapMaterial(reference, token.WrappedPrivateKey, encryptedKeyMaterial, Padding(token.WrappingAlgorithm));
            }
            catch (Exception e) when (e is not KmsException)
            {
                throw KmsErrors.InvalidKeyMaterial("the HSM could not unwrap it with the import token's key (wrong public key or padding, or not 32 bytes): " + e.Message);
            }

            fingerprint = "kcv:" + Convert.ToHexStringLower(checkValue);
            if (key.MaterialFingerprint is { } earlier && earlier != fingerprint)
            {
                backend.DestroyMaterial(reference, persisted);
                throw KmsErrors.InvalidKeyMaterial("this key already had different material; only the same material can be imported again.");
            }
        }
        else
        {
            using var material = UnwrapImported(token, encryptedKeyMaterial);
            fingerprint = Fingerprint(key.KeyId, material.Span);
            if (key.MaterialFingerprint is { } previous && previous != fingerprint)
            {
                throw KmsErrors.InvalidKeyMaterial("this key already had different material; only the same material can be imported again.");
            }

            persisted = backend.ImportMaterial(reference, material.Span);
        }
        KeyRecord Apply(KeyRecord k) => k with
        {
            KeyState = k.KeyState == KeyStates.PendingImport ? KeyStates.Enabled : k.KeyState,
            PrimaryKeyVersion = versionId,
            MaterialExpireTime = expiry,
            MaterialFingerprint = fingerprint,
            LastRotationDate = k.LastRotationDate ?? now,
        };
        if (existing is null)
        {
            _store.AddVersion(key.KeyId, k => (Apply(k), new KeyVersionRecord(k.KeyId, versionId, now, persisted)));
        }
        else
        {
            _store.SetVersionMaterial(key.KeyId, versionId, persisted, Apply);
        }

        _ring.Forget(key.KeyId, cached.Versions);
    }

    /// <summary>DeleteKeyMaterial: destroys imported material; the key goes back to PendingImport (a key pending deletion keeps its state).</summary>
    public void DeleteKeyMaterial(KmsCallContext context, string keyId)
    {
        var cached = Resolve(context, keyId);
        var key = cached.Record;
        RefuseServiceKey(key, "DeleteKeyMaterial");
        if (key.Origin != "EXTERNAL")
        {
            throw KmsErrors.UnsupportedOrigin(key.KeyId, "DeleteKeyMaterial");
        }

        DestroyImportedMaterial(cached);
    }

    // DeleteKeyMaterial, and expiry: the material goes (from the device too) and the key waits for it.
    private void DestroyImportedMaterial(CachedKey cached)
    {
        var key = cached.Record;
        foreach (var version in cached.Versions)
        {
            if (version.Material.Length > 0)
            {
                // Material held outside the store (an HSM object) is destroyed there.
                _ring.Backend(key.ProtectionLevel).DestroyMaterial(new KeyVersionRef(key.KeyId, version.KeyVersionId, key.DkmsInstanceId), version.Material);
            }

            _store.SetVersionMaterial(key.KeyId, version.KeyVersionId, [], k => k with
            {
                KeyState = k.KeyState == KeyStates.PendingDeletion ? k.KeyState : KeyStates.PendingImport,
                MaterialExpireTime = null,
            });
        }

        _ring.Forget(key.KeyId, cached.Versions);
    }

    // Import tokens that expired, of a purged key (keyId), or whose key is gone. A software token's
    // row holds its private key (wrapped by the root key): the row goes. A device token's row names a
    // wrapping pair in the device: the pair is destroyed there first, and the row is kept when that
    // is not possible here (no HSM configured in this process, or the device failed), so that a pass
    // with the device tries again. Housekeeping itself goes on either way.
    private void RemoveImportTokens(DateTimeOffset now, string? keyId)
    {
        foreach (var (token, level) in _store.StaleImportTokens(now, keyId))
        {
            var software = level == "SOFTWARE" || (level is null && IsSoftwareToken(token));
            if (!software)
            {
                try
                {
                    if (!_ring.HasBackend("HSM") || _ring.Backend("HSM") is not IKeyImportBackend device || !device.DestroyWrappingKey(token.WrappedPrivateKey))
                    {
                        continue;
                    }
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    continue;
                }
            }

            _store.DeleteImportToken(token.Token);
        }
    }

    // Whether a token's stored private key is the root-wrapped kind (software), for a token whose key is gone.
    private bool IsSoftwareToken(ImportTokenRecord token)
    {
        try
        {
            using var privateKey = _root.Unwrap(token.WrappedPrivateKey, ImportTokenContext(token.Token));
            return true;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return false;
        }
    }

    private SecretBuffer UnwrapImported(ImportTokenRecord token, ReadOnlySpan<byte> encryptedKeyMaterial)
    {
        using var privateKey = _root.Unwrap(token.WrappedPrivateKey, ImportTokenContext(token.Token));
        using var rsa = RSA.Create();
        rsa.ImportPkcs8PrivateKey(privateKey.Span, out _);
        var output = new SecretBuffer(rsa.KeySize / 8);
        try
        {
            if (!rsa.TryDecrypt(encryptedKeyMaterial, output.Span, Padding(token.WrappingAlgorithm), out var written))
            {
                throw KmsErrors.InvalidKeyMaterial("it could not be unwrapped with the import token's key.");
            }

            if (written != 32)
            {
                throw KmsErrors.InvalidKeyMaterial($"Aliyun_AES_256 material is 32 bytes, not {written}.");
            }

            var material = SecretBuffer.CopyFrom(output.Span[..32]);
            return material;
        }
        catch (CryptographicException)
        {
            throw KmsErrors.InvalidKeyMaterial("it could not be unwrapped with the import token's key (wrong public key, padding or algorithm).");
        }
        finally
        {
            output.Dispose();
        }
    }

    private static RSAEncryptionPadding Padding(string wrappingAlgorithm) => wrappingAlgorithm switch
    {
        "RSAES_OAEP_SHA_256" => RSAEncryptionPadding.OaepSHA256,
        "RSAES_OAEP_SHA_1" => RSAEncryptionPadding.OaepSHA1,
        "RSAES_PKCS1_V1_5" => throw KmsErrors.InvalidParameter("WrappingAlgorithm",
            "RSAES_PKCS1_V1_5 is refused: PKCS#1 v1.5 encryption is open to padding-oracle attacks. Use RSAES_OAEP_SHA_256."),
        _ => throw KmsErrors.InvalidParameter("WrappingAlgorithm", "use RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1."),
    };

    private static byte[] ImportTokenContext(string token) => System.Text.Encoding.UTF8.GetBytes("TdeEngine/import-token/v1\0" + token);

    private static string Fingerprint(string keyId, ReadOnlySpan<byte> material)
    {
        var prefix = System.Text.Encoding.UTF8.GetBytes("TdeEngine/byok-fingerprint/v1\0" + keyId + "\0");
        var input = new byte[prefix.Length + material.Length];
        try
        {
            prefix.CopyTo(input, 0);
            material.CopyTo(input.AsSpan(prefix.Length));
            return Convert.ToHexStringLower(SHA256.HashData(input));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(input);
        }
    }

    // ================================================================ cryptography

    /// <summary>Encrypt (up to 6 KiB) under the primary version of a key.</summary>
    public CiphertextResult Encrypt(KmsCallContext context, string keyId, ReadOnlySpan<byte> plaintext, EncryptionContext? encryptionContext = null)
    {
        if (plaintext.Length is 0 or > MaxEncryptPlaintext)
        {
            throw KmsErrors.InvalidParameter("Plaintext", $"Encrypt takes 1 to {MaxEncryptPlaintext} bytes; seal larger data with a data key.");
        }

        var (key, version, cipher) = PrimaryForUse(context, keyId);
        var blob = CiphertextBlob.Seal(cipher, key.KeyId, version.KeyVersionId, encryptionContext ?? EncryptionContext.Empty, plaintext);
        return new CiphertextResult(key.KeyId, version.KeyVersionId, blob);
    }

    /// <summary>Decrypt. The blob names its key and version, so no key id is needed.</summary>
    public PlaintextResult Decrypt(KmsCallContext context, ReadOnlySpan<byte> ciphertextBlob, EncryptionContext? encryptionContext = null)
    {
        var (header, key, version, cipher) = OpenForUse(context, ciphertextBlob);
        var plaintext = new SecretBuffer(header.PlaintextLength);
        try
        {
            CiphertextBlob.Open(cipher, header, ciphertextBlob, encryptionContext ?? EncryptionContext.Empty, plaintext.Span);
            return new PlaintextResult(key.KeyId, version.KeyVersionId, plaintext, null);
        }
        catch
        {
            plaintext.Dispose();
            throw;
        }
    }

    /// <summary>
    /// GenerateDataKey: a fresh random data key of <paramref name="numberOfBytes"/> (1–1024; 32 is AES-256),
    /// returned in plaintext (in a <see cref="SecretBuffer"/>) and sealed under the key.
    /// </summary>
    public PlaintextResult GenerateDataKey(KmsCallContext context, string keyId, int numberOfBytes = 32, EncryptionContext? encryptionContext = null)
    {
        CheckDataKeyLength(numberOfBytes);
        var (key, version, cipher) = PrimaryForUse(context, keyId);
        var plaintext = SecretBuffer.Random(numberOfBytes);
        try
        {
            var blob = CiphertextBlob.Seal(cipher, key.KeyId, version.KeyVersionId, encryptionContext ?? EncryptionContext.Empty, plaintext.Span);
            return new PlaintextResult(key.KeyId, version.KeyVersionId, plaintext, blob);
        }
        catch
        {
            plaintext.Dispose();
            throw;
        }
    }

    /// <summary>GenerateDataKeyWithoutPlaintext: only the sealed data key leaves the KMS.</summary>
    public CiphertextResult GenerateDataKeyWithoutPlaintext(KmsCallContext context, string keyId, int numberOfBytes = 32,
        EncryptionContext? encryptionContext = null)
    {
        using var dataKey = GenerateDataKey(context, keyId, numberOfBytes, encryptionContext);
        return new CiphertextResult(dataKey.KeyId, dataKey.KeyVersionId, dataKey.CiphertextBlob!);
    }

    /// <summary>
    /// ReEncrypt: opens a blob and seals its plaintext under another key (or the same key's new
    /// primary version) without the plaintext leaving the KMS. Returns the destination key.
    /// </summary>
    public CiphertextResult ReEncrypt(KmsCallContext context, ReadOnlySpan<byte> ciphertextBlob, string destinationKeyId,
        EncryptionContext? sourceEncryptionContext = null, EncryptionContext? destinationEncryptionContext = null)
    {
        var (destination, destinationVersion, destinationCipher) = PrimaryForUse(context, destinationKeyId);
        using var plaintext = Decrypt(context, ciphertextBlob, sourceEncryptionContext);
        var blob = CiphertextBlob.Seal(destinationCipher, destination.KeyId, destinationVersion.KeyVersionId,
            destinationEncryptionContext ?? EncryptionContext.Empty, plaintext.Plaintext.Span);
        return new CiphertextResult(destination.KeyId, destinationVersion.KeyVersionId, blob);
    }

    /// <summary>Wipes the opened key versions and the root key (when this instance opened it).</summary>
    public void Dispose()
    {
        _ring.Dispose();
        _store.Dispose();
        _ownedRoot?.Dispose();
    }

    // ================================================================ internals

    // The home holds the root key and the key store: owner-only (0700), like ~/.ssh.
    private static void CreatePrivateDirectory(string path)
    {
        if (OperatingSystem.IsWindows() || Directory.Exists(path))
        {
            Directory.CreateDirectory(path);
            return;
        }

        Directory.CreateDirectory(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    /// <summary>Resolves a key id, key ARN, alias or alias ARN in the caller's account and region.</summary>
    internal CachedKey Resolve(KmsCallContext context, string keyId, bool createServiceKey = false)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (string.IsNullOrWhiteSpace(keyId))
        {
            throw KmsErrors.MissingParameter("KeyId");
        }

        var account = context.AccountId;
        var reference = keyId;
        if (KeyIdentifiers.TryParseArn(keyId, RegionId, out var arnAccount, out var resource))
        {
            if (arnAccount != account)
            {
                // Keys of other accounts are invisible: the same answer as for a key that does not exist.
                throw KmsErrors.KeyNotFound(keyId);
            }

            // key/<id> or alias/<name>; key/alias/<name> is neither (an alias is not a key id).
            reference = resource.StartsWith("key/", StringComparison.Ordinal) && !KeyIdentifiers.IsAlias(resource["key/".Length..])
                ? resource["key/".Length..]
                : KeyIdentifiers.IsAlias(resource) ? resource
                : throw KmsErrors.KeyNotFound(keyId);
        }

        string id;
        if (KeyIdentifiers.IsAlias(reference))
        {
            id = _ring.FindAlias(account, RegionId, reference)
                 ?? (createServiceKey && KeyIdentifiers.ServiceProduct(reference) is { } product
                     ? CreateServiceKey(account, reference, product)
                     : throw KmsErrors.AliasNotFound(reference));
        }
        else
        {
            id = reference;
        }

        var key = _ring.GetKey(id);
        if (key is null || key.Record.AccountId != account || key.Record.RegionId != RegionId)
        {
            throw KmsErrors.KeyNotFound(keyId);
        }

        if (IsDeletionDue(key.Record, _time.GetUtcNow()))
        {
            Purge(key.Record.KeyId, _time.GetUtcNow());
            throw KmsErrors.KeyNotFound(keyId);
        }

        return key;
    }

    private string CreateServiceKey(string accountId, string aliasName, string product)
    {
        var key = _store.GetOrCreateServiceKey(accountId, RegionId, aliasName, () =>
        {
            var now = _time.GetUtcNow();
            var keyId = KeyIdentifiers.NewDefaultKeyId();
            var versionId = KeyIdentifiers.NewKeyVersionId();
            var material = _ring.Backend("SOFTWARE").CreateMaterial(new KeyVersionRef(keyId, versionId, null));
            var record = new KeyRecord
            {
                KeyId = keyId,
                AccountId = accountId,
                RegionId = RegionId,
                Description = $"Service key of {product.ToUpperInvariant()}, created on first use.",
                KeySpec = "Aliyun_AES_256",
                KeyUsage = "ENCRYPT/DECRYPT",
                Origin = "Aliyun_KMS",
                ProtectionLevel = "SOFTWARE",
                Creator = char.ToUpperInvariant(product[0]) + product[1..],
                CreationDate = now,
                KeyState = KeyStates.Enabled,
                PrimaryKeyVersion = versionId,
                LastRotationDate = now,
                ServiceProduct = product,
            };
            return (record, new KeyVersionRecord(keyId, versionId, now, material));
        });
        _ring.InvalidateAliases();
        return key.KeyId;
    }

    private (KeyRecord Key, KeyVersionRecord Version, IKeyVersionCipher Cipher) PrimaryForUse(KmsCallContext context, string keyId)
    {
        var key = Resolve(context, keyId, createServiceKey: true);
        var record = key.Record;
        RequireUsable(record);
        Throttle(record);
        if (record.PrimaryKeyVersion is null || !key.ById.TryGetValue(record.PrimaryKeyVersion, out var version))
        {
            throw KmsErrors.PendingImport(record.KeyId);
        }

        return (record, version, _ring.Cipher(record, version));
    }

    private (BlobHeader Header, KeyRecord Key, KeyVersionRecord Version, IKeyVersionCipher Cipher) OpenForUse(KmsCallContext context,
        ReadOnlySpan<byte> blob)
    {
        ArgumentNullException.ThrowIfNull(context);
        var header = CiphertextBlob.ReadHeader(blob);
        var key = _ring.GetKey(header.KeyId);
        if (key is null || key.Record.AccountId != context.AccountId || key.Record.RegionId != RegionId)
        {
            throw KmsErrors.KeyNotFound(header.KeyId);
        }

        if (IsDeletionDue(key.Record, _time.GetUtcNow()))
        {
            Purge(key.Record.KeyId, _time.GetUtcNow());
            throw KmsErrors.KeyNotFound(header.KeyId);
        }

        RequireUsable(key.Record);
        Throttle(key.Record);
        if (!key.ById.TryGetValue(header.KeyVersionId, out var version))
        {
            // The version may have been created by another process since the ring last looked.
            _ring.Invalidate(header.KeyId);
            key = _ring.GetKey(header.KeyId);
            if (key is null || !key.ById.TryGetValue(header.KeyVersionId, out version))
            {
                throw KmsErrors.InvalidCiphertext(header.KeyId);
            }
        }

        return (header, key.Record, version, _ring.Cipher(key.Record, version));
    }

    // The state a caller sees: an Enabled key whose imported material has expired is PendingImport
    // (housekeeping deletes the material and stores that state soon after).
    private string EffectiveState(KeyRecord k) =>
        k.KeyState == KeyStates.Enabled && k.MaterialExpireTime <= _time.GetUtcNow() ? KeyStates.PendingImport : k.KeyState;

    private void RequireUsable(KeyRecord key)
    {
        switch (key.KeyState)
        {
            case KeyStates.Enabled:
                if (key.MaterialExpireTime is { } expiry && expiry <= _time.GetUtcNow())
                {
                    throw KmsErrors.PendingImport(key.KeyId);
                }

                return;
            case KeyStates.Disabled: throw KmsErrors.Disabled(key.KeyId);
            case KeyStates.PendingDeletion: throw KmsErrors.PendingDeletion(key.KeyId);
            default: throw KmsErrors.PendingImport(key.KeyId);
        }
    }

    private void Throttle(KeyRecord key)
    {
        if (key.DkmsInstanceId is null)
        {
            return;
        }

        var instance = _store.GetInstance(key.DkmsInstanceId) ?? throw KmsErrors.InstanceNotFound(key.DkmsInstanceId);
        _throttle.Acquire(instance.InstanceId, instance.Spec);
    }

    private KeyVersionRecord AddVersion(string keyId, bool manual)
    {
        var (_, version) = _store.AddVersion(keyId, current =>
        {
            if (current.Origin == "EXTERNAL")
            {
                throw KmsErrors.UnsupportedOperation("new versions of keys with imported (EXTERNAL) material; create a new key instead.");
            }

            RequireUsable(current);
            var now = _time.GetUtcNow();
            if (!manual && !(current.AutomaticRotation && current.NextRotationDate <= now))
            {
                throw KmsErrors.StateModifiedFailed(current.KeyId, current.KeyState, "automatic rotation (not due)");
            }

            var versionId = KeyIdentifiers.NewKeyVersionId();
            var material = _ring.Backend(current.ProtectionLevel).CreateMaterial(new KeyVersionRef(current.KeyId, versionId, current.DkmsInstanceId));
            var updated = current with
            {
                PrimaryKeyVersion = versionId,
                LastRotationDate = now,
                NextRotationDate = current.AutomaticRotation && current.RotationIntervalSeconds is { } s ? now.AddSeconds(s) : null,
            };
            return (updated, new KeyVersionRecord(current.KeyId, versionId, now, material));
        });
        _ring.Invalidate(keyId);
        return version;
    }

    private KeyRecord Mutate(KmsCallContext context, string keyId, string action, Func<KeyRecord, KeyRecord> change)
    {
        var key = Resolve(context, keyId).Record;
        RefuseServiceKey(key, action);
        var updated = _store.UpdateKey(key.KeyId, change);
        _ring.Invalidate(key.KeyId);
        return updated;
    }

    private bool Purge(string keyId, DateTimeOffset now)
    {
        // Null: already gone or no longer due. Empty: an EXTERNAL key that never received material.
        var versions = _store.PurgeKey(keyId, now);
        if (versions is null)
        {
            return false;
        }

        var key = _ring.GetKey(keyId)?.Record;
        foreach (var version in versions)
        {
            if (key is not null && _ring.HasBackend(key.ProtectionLevel))
            {
                _ring.Backend(key.ProtectionLevel).DestroyMaterial(new KeyVersionRef(keyId, version.KeyVersionId, key.DkmsInstanceId), version.Material);
            }
        }

        _ring.Forget(keyId, versions);
        RemoveImportTokens(now, keyId);
        return true;
    }

    private static bool IsDeletionDue(KeyRecord key, DateTimeOffset now) =>
        key.KeyState == KeyStates.PendingDeletion && key.DeleteDate <= now;

    private static void RefuseServiceKey(KeyRecord key, string action)
    {
        if (key.IsServiceKey)
        {
            throw KmsErrors.ServiceKeyReadOnly(key.KeyId, action);
        }
    }

    private static void CheckUserAlias(string aliasName)
    {
        if (string.IsNullOrEmpty(aliasName))
        {
            throw KmsErrors.MissingParameter("AliasName");
        }

        KeyIdentifiers.ValidateAliasName(aliasName);
        if (aliasName.StartsWith(KeyIdentifiers.ServiceAliasPrefix, StringComparison.Ordinal))
        {
            throw KmsErrors.ReservedAlias(aliasName);
        }
    }

    private static void CheckDescription(string description)
    {
        if (description.Length > MaxDescription)
        {
            throw KmsErrors.InvalidParameter("Description", $"a description holds at most {MaxDescription} characters.");
        }
    }

    private static TimeSpan CheckRotationInterval(TimeSpan? interval)
    {
        if (interval is not { } value)
        {
            throw KmsErrors.MissingParameter("RotationInterval");
        }

        if (value < MinRotation || value > MaxRotation)
        {
            throw KmsErrors.InvalidParameter("RotationInterval", "automatic rotation runs every 7 to 365 days (7d to 365d).");
        }

        return value;
    }

    private static void CheckDataKeyLength(int numberOfBytes)
    {
        if (numberOfBytes is < 1 or > 1024)
        {
            throw KmsErrors.InvalidParameter("NumberOfBytes", "a data key is 1 to 1024 bytes (32 for AES-256, 16 for AES-128).");
        }
    }

    private static List<KeyValuePair<string, string>> CheckTags(IReadOnlyList<KeyValuePair<string, string>> tags)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (tagKey, tagValue) in tags)
        {
            if (string.IsNullOrEmpty(tagKey) || tagKey.Length > 128 || (tagValue?.Length ?? 0) > 128)
            {
                throw KmsErrors.InvalidParameter("Tags", "a tag key is 1 to 128 characters and a tag value at most 128.");
            }

            if (tagKey.StartsWith("aliyun", StringComparison.OrdinalIgnoreCase) || tagKey.StartsWith("acs:", StringComparison.OrdinalIgnoreCase))
            {
                throw KmsErrors.InvalidParameter("Tags", $"the tag key '{tagKey}' uses a reserved prefix (aliyun, acs:).");
            }

            if (!seen.Add(tagKey))
            {
                throw KmsErrors.InvalidParameter("Tags", $"the tag key '{tagKey}' appears more than once.");
            }
        }

        if (tags.Count > MaxTagsPerKey)
        {
            throw KmsErrors.InvalidParameter("Tags", $"a key can hold at most {MaxTagsPerKey} tags.");
        }

        return tags.Select(t => new KeyValuePair<string, string>(t.Key, t.Value ?? "")).ToList();
    }

    private static Page<T> Paginate<T>(IReadOnlyList<T> all, int pageNumber, int pageSize, int maxPageSize = 100)
    {
        if (pageNumber < 1)
        {
            throw KmsErrors.InvalidParameter("PageNumber", "pages are numbered from 1.");
        }

        if (pageSize < 1 || pageSize > maxPageSize)
        {
            throw KmsErrors.InvalidParameter("PageSize", $"a page holds 1 to {maxPageSize} entries.");
        }

        var items = all.Skip((int)Math.Min(int.MaxValue, (long)(pageNumber - 1) * pageSize)).Take(pageSize).ToList();
        return new Page<T>(items, all.Count, pageNumber, pageSize);
    }

    private KeyMetadata ToMetadata(KeyRecord k) => new()
    {
        KeyId = k.KeyId,
        Arn = KeyIdentifiers.KeyArn(k.RegionId, k.AccountId, k.KeyId),
        Description = k.Description,
        KeySpec = k.KeySpec,
        KeyUsage = k.IsServiceKey ? "Service Key" : k.KeyUsage,
        Origin = k.Origin,
        ProtectionLevel = k.ProtectionLevel,
        Creator = k.Creator,
        CreationDate = k.CreationDate,
        KeyState = EffectiveState(k),
        PrimaryKeyVersion = k.PrimaryKeyVersion,
        DeletionProtection = k.DeletionProtection,
        DeletionProtectionDescription = k.DeletionProtectionDescription,
        DeleteDate = k.DeleteDate,
        AutomaticRotation = k.AutomaticRotation ? "Enabled" : "Disabled",
        // As Alibaba: the interval is shown only while automatic rotation is on (the store keeps the last one).
        RotationInterval = k.AutomaticRotation && k.RotationIntervalSeconds is { } s ? TimeSpan.FromSeconds(s) : null,
        LastRotationDate = k.LastRotationDate,
        NextRotationDate = k.NextRotationDate,
        DKMSInstanceId = k.DkmsInstanceId,
        MaterialExpireTime = k.MaterialExpireTime,
        IsServiceKey = k.IsServiceKey,
    };

    private AliasInfo ToInfo(AliasRecord a) => new(a.AliasName, KeyIdentifiers.AliasArn(a.RegionId, a.AccountId, a.AliasName), a.KeyId);

    private KmsInstanceInfo ToInfo(KmsInstanceRecord i) =>
        new(i.InstanceId, KeyIdentifiers.InstanceArn(i.RegionId, i.AccountId, i.InstanceId), i.ProductType, i.KeyNum, i.Spec, i.CreationDate);
}

/// <summary>What a housekeeping pass did.</summary>
/// <param name="DeletedKeys">Keys whose deletion window had passed and that are now gone.</param>
/// <param name="RotatedKeys">Keys that got a new primary version by automatic rotation.</param>
/// <param name="ExpiredMaterialKeys">EXTERNAL keys whose imported material expired and was deleted (now PendingImport).</param>
public sealed record HousekeepingResult(IReadOnlyList<string> DeletedKeys, IReadOnlyList<string> RotatedKeys, IReadOnlyList<string> ExpiredMaterialKeys);
