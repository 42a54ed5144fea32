using System.Security.Cryptography;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Kms.Hsm;

/// <summary>
/// A root key that lives in the HSM: an AES-256 token object (non-extractable, sensitive) that wraps
/// software key material, RAM secrets and audit checkpoint keys at rest with <c>CKM_AES_GCM</c> inside
/// the token. The wrap format mirrors <see cref="FileRootKeyProvider"/> with its own magic ("TDRH"),
/// so a store wrapped by one provider is refused, by name, by the other.
/// </summary>
public sealed class HsmRootKeyProvider : IRootKeyProvider
{
    private const int IdLength = 16;
    private const int NonceLength = 12;
    private const int TagLength = 16;
    private const int HeaderLength = 4 + 1 + IdLength;
    private static ReadOnlySpan<byte> Magic => "TDRH"u8;

    private readonly Pkcs11KeyProtectionBackend _backend;
    private readonly Net.Pkcs11Interop.HighLevelAPI.IObjectHandle _key;
    private readonly byte[] _id;

    private HsmRootKeyProvider(Pkcs11KeyProtectionBackend backend, Net.Pkcs11Interop.HighLevelAPI.IObjectHandle key, byte[] id)
    {
        _backend = backend;
        _key = key;
        _id = id;
        RootKeyId = "hsm:" + Convert.ToHexStringLower(id);
    }

    /// <summary>The token object's label.</summary>
    public const string DefaultLabel = "tde-root-key";

    public string RootKeyId { get; }

    /// <summary>Finds the root key object labelled <paramref name="label"/> in the backend's token, creating it on first use.</summary>
    public static HsmRootKeyProvider OpenOrCreate(Pkcs11KeyProtectionBackend backend, string label = DefaultLabel)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentException.ThrowIfNullOrEmpty(label);
        var (key, id) = backend.FindOrCreateRootKey(label, IdLength);
        return new HsmRootKeyProvider(backend, key, id);
    }

    public byte[] Wrap(ReadOnlySpan<byte> material, ReadOnlySpan<byte> context)
    {
        var header = Header(_id);
        var nonce = RandomNumberGenerator.GetBytes(NonceLength);
        var plaintext = material.ToArray();
        byte[] sealedBytes;
        try
        {
            sealedBytes = _backend.Encrypt(_key, nonce, [.. header, .. context], plaintext);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(plaintext);
        }

        return [.. header, .. nonce, .. sealedBytes];
    }

    public SecretBuffer Unwrap(ReadOnlySpan<byte> wrapped, ReadOnlySpan<byte> context)
    {
        if (wrapped.Length < HeaderLength + NonceLength + TagLength || !wrapped[..4].SequenceEqual(Magic) || wrapped[4] != 1)
        {
            throw new CryptographicException("The wrapped key material is not in the HSM root-key wrap format: it was wrapped by another root key provider (root.key file?), or the key store is damaged.");
        }

        if (!wrapped.Slice(5, IdLength).SequenceEqual(_id))
        {
            throw new CryptographicException(
                $"The key material was wrapped by HSM root key hsm:{Convert.ToHexStringLower(wrapped.Slice(5, IdLength))}, but this token holds {RootKeyId}. Point TDE_HSM_TOKEN at the token that holds it.");
        }

        var plaintext = _backend.Decrypt(_key, wrapped.Slice(HeaderLength, NonceLength).ToArray(), [.. wrapped[..HeaderLength], .. context],
            wrapped[(HeaderLength + NonceLength)..].ToArray())
            ?? throw new CryptographicException("The wrapped key material failed to authenticate under the HSM root key; the key store was altered or damaged.");
        try
        {
            return SecretBuffer.CopyFrom(plaintext);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(plaintext);
        }
    }

    private static byte[] Header(byte[] id) => [.. Magic, 1, .. id];
}
