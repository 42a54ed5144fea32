using TdeEngine.Kms.Crypto;
using TdeEngine.Storage.Envelope;

namespace TdeEngine.Storage.Pages;

/// <summary>
/// What one open connection needs to seal and open the pages of one database: its id, page
/// geometry, and a cipher per DEK version. Pages under several DEK versions can coexist (the
/// online DEK rotation builds on this); new pages are sealed under the active version.
/// </summary>
/// <remarks>
/// Thread-safe for sealing and opening. Owns its ciphers and the envelope MAC key of each DEK
/// version; disposing wipes them.
/// </remarks>
internal sealed class DatabaseCrypto : IDisposable
{
    private readonly byte[] _databaseId;
    private Dictionary<uint, IPageCipher> _ciphers;
    private Dictionary<uint, EnvelopeMacKey> _macKeys;
    private IPageCipher _active;

    public DatabaseCrypto(byte[] databaseId, int pageSize, int reserve, uint activeVersion, Dictionary<uint, IPageCipher> ciphers,
        Dictionary<uint, EnvelopeMacKey> macKeys, SealCounter counter)
    {
        _databaseId = databaseId;
        _macKeys = macKeys;
        PageSize = pageSize;
        Reserve = reserve;
        ActiveVersion = activeVersion;
        _ciphers = ciphers;
        _active = ciphers[activeVersion];
        Counter = counter;
        if (PageCipherSuites.ReserveBytes(_active.Suite) != reserve)
        {
            throw new InvalidOperationException("The page reserve does not match the active cipher suite.");
        }
    }

    public ReadOnlySpan<byte> DatabaseId => _databaseId;

    public int PageSize { get; }

    public int Reserve { get; }

    public int BodySize => PageSize - Reserve;

    public uint ActiveVersion { get; private set; }

    public PageCipherSuite ActiveSuite => _active.Suite;

    public SealCounter Counter { get; private set; }

    /// <summary>Writes a new seal reservation to the envelope; set by the connection's database file.</summary>
    public Action<ulong>? PersistReservation { get; set; }

    /// <summary>
    /// Re-reads the envelope and takes up the DEKs added or retired since (a DEK re-encryption);
    /// true when the DEKs changed. Set by the connection's database file.
    /// </summary>
    public Func<bool>? Refresh { get; set; }

    /// <summary>The DEK versions this connection can open.</summary>
    public IReadOnlyCollection<uint> Versions => _ciphers.Keys;

    /// <summary>A copy (the caller disposes it) of the envelope MAC key of DEK <paramref name="version"/>, or null when this connection does not hold that DEK.</summary>
    public EnvelopeMacKey? CopyMacKey(uint version) => _macKeys.TryGetValue(version, out var key) ? key.Copy() : null;

    /// <summary>
    /// Takes up another set of DEKs: versions not held yet get a cipher from <paramref name="create"/>,
    /// versions no longer listed are wiped, and new pages are sealed under <paramref name="activeVersion"/>.
    /// </summary>
    public void Update(uint activeVersion, IReadOnlyCollection<uint> versions, Func<uint, (IPageCipher Cipher, EnvelopeMacKey MacKey)> create, SealCounter counter)
    {
        var next = new Dictionary<uint, IPageCipher>();
        var nextMacKeys = new Dictionary<uint, EnvelopeMacKey>();
        try
        {
            foreach (var version in versions)
            {
                if (_ciphers.TryGetValue(version, out var held))
                {
                    next[version] = held;
                    nextMacKeys[version] = _macKeys[version];
                }
                else
                {
                    var (cipher, macKey) = create(version);
                    next[version] = cipher;
                    nextMacKeys[version] = macKey;
                }
            }

            if (!next.TryGetValue(activeVersion, out var active) || PageCipherSuites.ReserveBytes(active.Suite) != Reserve)
            {
                throw new InvalidOperationException("The active DEK is missing, or its cipher suite does not fit the page reserve.");
            }
        }
        catch
        {
            foreach (var (version, cipher) in next)
            {
                if (!_ciphers.ContainsKey(version))
                {
                    cipher.Dispose();
                    nextMacKeys.GetValueOrDefault(version)?.Dispose();
                }
            }

            throw;
        }

        foreach (var (version, cipher) in _ciphers)
        {
            if (!next.ContainsKey(version))
            {
                cipher.Dispose();
                _macKeys[version].Dispose();
            }
        }

        _ciphers = next;
        _macKeys = nextMacKeys;
        _active = next[activeVersion];
        ActiveVersion = activeVersion;
        Counter = counter;
    }

    /// <summary>
    /// Seals a plaintext page image (its reserved bytes are ignored) into <paramref name="output"/>.
    /// <paramref name="binding"/> (journal and WAL images: <see cref="PageTrailer.BindingSize"/> bytes) is appended to the AAD.
    /// </summary>
    public void Seal(PageFileKind kind, long position, ReadOnlySpan<byte> page, Span<byte> output, ReadOnlySpan<byte> binding = default)
    {
        Counter.Take(PersistReservation);
        var suite = _active.Suite;
        var nonceSize = PageCipherSuites.NonceSize(suite);
        var trailer = output[BodySize..PageSize];
        PageTrailer.Write(trailer, suite, ActiveVersion);
        var nonce = trailer.Slice(PageTrailer.HeaderSize, nonceSize);
        FastRandom.Fill(nonce);
        Span<byte> aad = stackalloc byte[PageTrailer.AadSize + PageTrailer.BindingSize];
        PageTrailer.WriteAad(aad, _databaseId, kind, position, ActiveVersion, suite);
        binding.CopyTo(aad[PageTrailer.AadSize..]);
        aad = aad[..(PageTrailer.AadSize + binding.Length)];
        _active.Seal(nonce, aad, page[..BodySize], output[..BodySize], trailer[(PageTrailer.HeaderSize + nonceSize)..]);
    }

    /// <summary>
    /// Opens a sealed page image into <paramref name="output"/>, with zeros in the reserved bytes.
    /// <paramref name="output"/> may be the same memory as <paramref name="sealedPage"/> (in place).
    /// False when it does not authenticate (altered, moved, from another database, or never sealed,
    /// or — journal and WAL images — bound to another page number, journal or WAL generation).
    /// </summary>
    public bool TryOpen(PageFileKind kind, long position, ReadOnlySpan<byte> sealedPage, Span<byte> output, ReadOnlySpan<byte> binding = default)
    {
        var trailer = sealedPage[BodySize..PageSize];
        var suite = PageTrailer.Suite(trailer);
        var version = PageTrailer.DekVersion(trailer);
        if (!_ciphers.TryGetValue(version, out var cipher))
        {
            // Sealed under a DEK added after this connection read the envelope (a DEK re-encryption
            // in another connection or process): read the envelope again before calling it tampered.
            if (Refresh?.Invoke() != true || !_ciphers.TryGetValue(version, out cipher))
            {
                return false;
            }
        }

        if (cipher.Suite != suite)
        {
            return false;
        }

        var nonceSize = PageCipherSuites.NonceSize(suite);
        Span<byte> aad = stackalloc byte[PageTrailer.AadSize + PageTrailer.BindingSize];
        PageTrailer.WriteAad(aad, _databaseId, kind, position, version, suite);
        binding.CopyTo(aad[PageTrailer.AadSize..]);
        aad = aad[..(PageTrailer.AadSize + binding.Length)];
        // The body is opened before the trailer (which holds nonce and tag) is cleared below.
        var ok = cipher.Open(trailer.Slice(PageTrailer.HeaderSize, nonceSize), aad, sealedPage[..BodySize],
            trailer[(PageTrailer.HeaderSize + nonceSize)..], output[..BodySize]);
        output[BodySize..PageSize].Clear();
        return ok;
    }

    /// <summary>The DEK version that sealed a page image, read from its trailer.</summary>
    public uint VersionOf(ReadOnlySpan<byte> sealedPage) => PageTrailer.DekVersion(sealedPage[BodySize..PageSize]);

    public void Dispose()
    {
        foreach (var cipher in _ciphers.Values)
        {
            cipher.Dispose();
        }

        foreach (var macKey in _macKeys.Values)
        {
            macKey.Dispose();
        }
    }
}
