namespace TdeEngine.Storage.Pages;

/// <summary>
/// The AEAD that seals the pages of a database, chosen when the database is created and recorded
/// in its envelope and in the trailer of every page.
/// </summary>
public enum PageCipherSuite : byte
{
    /// <summary>AES-256-GCM, 96-bit random nonce, 128-bit tag. The default: what compliance teams expect.</summary>
    Aes256Gcm = 1,

    /// <summary>AEGIS-256, 256-bit random nonce, 256-bit tag. The fast suite; random nonces never run out.</summary>
    Aegis256 = 2,
}

/// <summary>Sizes and names of the page cipher suites.</summary>
public static class PageCipherSuites
{
    /// <summary>Bytes of the page trailer (cipher id, DEK version, nonce, tag) = reserved bytes per page.</summary>
    public static int ReserveBytes(PageCipherSuite suite) => PageTrailer.HeaderSize + NonceSize(suite) + TagSize(suite);

    /// <summary>Nonce bytes.</summary>
    public static int NonceSize(PageCipherSuite suite) => suite switch
    {
        PageCipherSuite.Aes256Gcm => 12,
        PageCipherSuite.Aegis256 => 32,
        _ => throw new ArgumentOutOfRangeException(nameof(suite)),
    };

    /// <summary>Tag bytes.</summary>
    public static int TagSize(PageCipherSuite suite) => suite switch
    {
        PageCipherSuite.Aes256Gcm => 16,
        PageCipherSuite.Aegis256 => 32,
        _ => throw new ArgumentOutOfRangeException(nameof(suite)),
    };

    /// <summary>
    /// How many pages one DEK may seal. AES-GCM with random 96-bit nonces stays within NIST SP
    /// 800-38D's 2^32 bound with a margin of 2^28 for counts lost in crashes; AEGIS-256's 256-bit
    /// nonces have no practical bound.
    /// </summary>
    public static ulong SealLimit(PageCipherSuite suite) => suite == PageCipherSuite.Aes256Gcm ? (1UL << 32) - (1UL << 28) : ulong.MaxValue;

    /// <summary>The name used in URIs, options and the CLI: <c>aes-256-gcm</c> or <c>aegis-256</c>.</summary>
    public static string Name(PageCipherSuite suite) => suite switch
    {
        PageCipherSuite.Aes256Gcm => "aes-256-gcm",
        PageCipherSuite.Aegis256 => "aegis-256",
        _ => throw new ArgumentOutOfRangeException(nameof(suite)),
    };

    /// <summary>Parses <c>aes-256-gcm</c> or <c>aegis-256</c> (case-insensitive).</summary>
    public static PageCipherSuite Parse(string name) =>
        TryParse(name) ?? throw new ArgumentException($"Unknown page cipher '{name}'. Use aes-256-gcm or aegis-256.", nameof(name));

    /// <summary>Parses <c>aes-256-gcm</c> or <c>aegis-256</c> (case-insensitive); null for anything else.</summary>
    public static PageCipherSuite? TryParse(string name) => name.ToLowerInvariant() switch
    {
        "aes-256-gcm" or "aes256gcm" or "aes" => PageCipherSuite.Aes256Gcm,
        "aegis-256" or "aegis256" or "aegis" => PageCipherSuite.Aegis256,
        _ => null,
    };
}
