using System.Collections.Concurrent;
using TdeEngine.Kms.Protection;
using TdeEngine.Kms.Store;

namespace TdeEngine.Kms.KeyManagement;

/// <summary>
/// The in-memory view of the store that the hot path reads: key records with their versions,
/// alias targets, and opened key-version ciphers. Version material is unwrapped on first use only
/// (deferred, as in the DataProtection key ring); a cipher stays open until its version is purged or
/// loses its material (DeleteKeyMaterial, expiry), in this process or another, or the ring is disposed.
/// </summary>
/// <remarks>
/// Thread-safe. Records are refreshed when <see cref="SqliteKeyStore.DataVersion"/> moves, checked
/// at most once per <see cref="KmsOptions.StoreRefreshInterval"/>; writes through this process
/// invalidate the entries they touch at once. When another process changed the store, the opened
/// ciphers are checked against it too: those whose version is gone or holds other material are
/// wiped, so a long-running server does not keep the material of a key purged by the CLI.
/// </remarks>
internal sealed class KeyRing : IDisposable
{
    private readonly SqliteKeyStore _store;
    private readonly IReadOnlyDictionary<string, IKeyProtectionBackend> _backends;
    private readonly TimeProvider _time;
    private readonly TimeSpan _refreshInterval;
    private readonly ConcurrentDictionary<string, CachedKey> _keys = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Account, string Alias), string> _aliases = new();
    // By version id: the cipher, and the stored (wrapped) material it was opened from.
    private readonly ConcurrentDictionary<string, (byte[] Material, Lazy<IKeyVersionCipher> Cipher)> _ciphers = new(StringComparer.Ordinal);
    private readonly Lock _refreshLock = new();
    private long _dataVersion;
    private long _lastCheck;

    public KeyRing(SqliteKeyStore store, IReadOnlyDictionary<string, IKeyProtectionBackend> backends, TimeProvider time, TimeSpan refreshInterval)
    {
        _store = store;
        _backends = backends;
        _time = time;
        _refreshInterval = refreshInterval;
        _dataVersion = store.DataVersion();
        _lastCheck = time.GetTimestamp();
    }

    public CachedKey? GetKey(string keyId)
    {
        EnsureFresh();
        if (_keys.TryGetValue(keyId, out var cached))
        {
            return cached;
        }

        var record = _store.GetKey(keyId);
        if (record is null)
        {
            return null;
        }

        var versions = _store.GetVersions(keyId);
        cached = new CachedKey(record, versions);
        _keys[keyId] = cached;
        return cached;
    }

    public string? FindAlias(string accountId, string regionId, string aliasName)
    {
        EnsureFresh();
        if (_aliases.TryGetValue((accountId, aliasName), out var keyId))
        {
            return keyId;
        }

        keyId = _store.FindAlias(accountId, regionId, aliasName);
        if (keyId is not null)
        {
            _aliases[(accountId, aliasName)] = keyId;
        }

        return keyId;
    }

    /// <summary>The cipher of a version, unwrapping its material on first use.</summary>
    public IKeyVersionCipher Cipher(KeyRecord key, KeyVersionRecord version)
    {
        if (version.Material.Length == 0)
        {
            // Imported material deleted or expired: nothing to open (callers check the key state first).
            throw Errors.KmsErrors.PendingImport(key.KeyId);
        }

        var entry = _ciphers.GetOrAdd(version.KeyVersionId, static (_, state) => (state.version.Material, new Lazy<IKeyVersionCipher>(
            () => state.backend.OpenCipher(new KeyVersionRef(state.key.KeyId, state.version.KeyVersionId, state.key.DkmsInstanceId),
                state.version.Material), LazyThreadSafetyMode.ExecutionAndPublication)),
            (backend: Backend(key.ProtectionLevel), key, version));
        if (!ReferenceEquals(entry.Material, version.Material) && !entry.Material.AsSpan().SequenceEqual(version.Material))
        {
            // The version's material was replaced (deleted and imported again into a device): reopen.
            Drop(version.KeyVersionId, entry);
            return Cipher(key, version);
        }

        try
        {
            return entry.Cipher.Value;
        }
        catch
        {
            // Do not cache a failed unwrap: the next call retries (for example after a token is re-inserted).
            _ciphers.TryRemove(new KeyValuePair<string, (byte[], Lazy<IKeyVersionCipher>)>(version.KeyVersionId, entry));
            throw;
        }
    }

    public int OpenCipherCount => _ciphers.Count;

    public IKeyProtectionBackend Backend(string protectionLevel) =>
        _backends.TryGetValue(protectionLevel, out var backend) ? backend : throw Errors.KmsErrors.HsmNotConfigured();

    public bool HasBackend(string protectionLevel) => _backends.ContainsKey(protectionLevel);

    public void Invalidate(string keyId) => _keys.TryRemove(keyId, out _);

    public void InvalidateAliases() => _aliases.Clear();

    /// <summary>Drops a purged key and wipes the ciphers of its versions.</summary>
    public void Forget(string keyId, IEnumerable<KeyVersionRecord> versions)
    {
        Invalidate(keyId);
        InvalidateAliases();
        foreach (var version in versions)
        {
            if (_ciphers.TryGetValue(version.KeyVersionId, out var entry))
            {
                Drop(version.KeyVersionId, entry);
            }
        }
    }

    private void Drop(string versionId, (byte[] Material, Lazy<IKeyVersionCipher> Cipher) entry)
    {
        if (_ciphers.TryRemove(new KeyValuePair<string, (byte[], Lazy<IKeyVersionCipher>)>(versionId, entry)) && entry.Cipher.IsValueCreated)
        {
            entry.Cipher.Value.Dispose();
        }
    }

    // After another process changed the store: wipe the ciphers whose version is gone (purged) or
    // holds other material (deleted, expired, imported again).
    private void SweepCiphers()
    {
        var live = _store.LiveVersionMaterial(_ciphers.Keys.ToList());
        foreach (var (versionId, entry) in _ciphers)
        {
            if (!live.TryGetValue(versionId, out var material) || !material.AsSpan().SequenceEqual(entry.Material))
            {
                Drop(versionId, entry);
            }
        }
    }

    public void Dispose()
    {
        foreach (var (_, lazy) in _ciphers.Values)
        {
            if (lazy.IsValueCreated)
            {
                lazy.Value.Dispose();
            }
        }

        _ciphers.Clear();
    }

    private void EnsureFresh()
    {
        var now = _time.GetTimestamp();
        if (_time.GetElapsedTime(Volatile.Read(ref _lastCheck), now) < _refreshInterval)
        {
            return;
        }

        lock (_refreshLock)
        {
            var version = _store.DataVersion();
            if (version != _dataVersion)
            {
                _dataVersion = version;
                _keys.Clear();
                _aliases.Clear();
                SweepCiphers();
            }

            Volatile.Write(ref _lastCheck, now);
        }
    }
}

/// <summary>A key record with its versions, as cached by the key ring.</summary>
internal sealed class CachedKey
{
    public CachedKey(KeyRecord record, IReadOnlyList<KeyVersionRecord> versions)
    {
        Record = record;
        Versions = versions;
        ById = versions.ToDictionary(v => v.KeyVersionId, StringComparer.Ordinal);
    }

    public KeyRecord Record { get; }

    /// <summary>Versions in creation order.</summary>
    public IReadOnlyList<KeyVersionRecord> Versions { get; }

    public IReadOnlyDictionary<string, KeyVersionRecord> ById { get; }

    private IReadOnlyList<TagInfo>? _tags;

    /// <summary>
    /// The key's tags, read once per cached record (RAM's <c>kms:tag/*</c> conditions ask on every
    /// call). Tag writes invalidate the record, as other processes' writes do through data_version.
    /// </summary>
    public IReadOnlyList<TagInfo> Tags(Func<IReadOnlyList<TagInfo>> load) => Volatile.Read(ref _tags) ?? (_tags = load());
}
