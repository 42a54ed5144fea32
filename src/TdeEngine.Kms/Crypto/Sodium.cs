using System.Runtime.InteropServices;

namespace TdeEngine.Kms.Crypto;

/// <summary>
/// The libsodium entry points TdeEngine calls directly. libsodium ships with NSec.Cryptography; calling
/// it directly avoids a key object per call on the hot paths (per-blob subkeys, per-page AEAD).
/// </summary>
internal static unsafe partial class Sodium
{
    private const string Lib = "libsodium";

    public const int Aes256GcmStateBytes = 512;
    public const int Aegis256KeyBytes = 32;
    public const int Aegis256NonceBytes = 32;
    public const int Aegis256TagBytes = 32;

    /// <summary>True when libsodium loaded and initialised.</summary>
    public static bool IsAvailable { get; } = Initialise();

    /// <summary>True when libsodium's AES-256-GCM can run (AES-NI and CLMUL present).</summary>
    public static bool Aes256GcmAvailable { get; } = IsAvailable && crypto_aead_aes256gcm_is_available() == 1;

    private static bool Initialise()
    {
        if (Environment.GetEnvironmentVariable("TDE_DISABLE_LIBSODIUM") == "1")
        {
            return false;
        }

        try
        {
            return sodium_init() >= 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport(Lib)]
    private static partial int sodium_init();

    [LibraryImport(Lib)]
    private static partial int crypto_aead_aes256gcm_is_available();

    [LibraryImport(Lib)]
    public static partial int crypto_aead_aes256gcm_encrypt_detached(byte* c, byte* mac, ulong* maclenP, byte* m, ulong mlen,
        byte* ad, ulong adlen, byte* nsec, byte* npub, byte* k);

    [LibraryImport(Lib)]
    public static partial int crypto_aead_aes256gcm_decrypt_detached(byte* m, byte* nsec, byte* c, ulong clen, byte* mac,
        byte* ad, ulong adlen, byte* npub, byte* k);

    [LibraryImport(Lib)]
    public static partial int crypto_aead_aes256gcm_beforenm(byte* state, byte* k);

    [LibraryImport(Lib)]
    public static partial int crypto_aead_aes256gcm_encrypt_detached_afternm(byte* c, byte* mac, ulong* maclenP, byte* m, ulong mlen,
        byte* ad, ulong adlen, byte* nsec, byte* npub, byte* state);

    [LibraryImport(Lib)]
    public static partial int crypto_aead_aes256gcm_decrypt_detached_afternm(byte* m, byte* nsec, byte* c, ulong clen, byte* mac,
        byte* ad, ulong adlen, byte* npub, byte* state);

    [LibraryImport(Lib)]
    public static partial int crypto_aead_aegis256_encrypt_detached(byte* c, byte* mac, ulong* maclenP, byte* m, ulong mlen,
        byte* ad, ulong adlen, byte* nsec, byte* npub, byte* k);

    [LibraryImport(Lib)]
    public static partial int crypto_aead_aegis256_decrypt_detached(byte* m, byte* nsec, byte* c, ulong clen, byte* mac,
        byte* ad, ulong adlen, byte* npub, byte* k);
}
