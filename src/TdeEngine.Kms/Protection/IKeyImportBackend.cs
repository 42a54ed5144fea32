using System.Security.Cryptography;

namespace TdeEngine.Kms.Protection;

/// <summary>
/// A backend that takes imported (BYOK) material itself: the RSA wrapping key pair lives in it and
/// the material is unwrapped inside it, never in the KMS's memory (an HSM). Backends without it get
/// material unwrapped by the KMS (software keys).
/// </summary>
public interface IKeyImportBackend
{
    /// <summary>Creates an RSA wrapping key pair; returns the public key (SubjectPublicKeyInfo DER) and a reference to store for the private key.</summary>
    (byte[] PublicKey, byte[] PrivateKeyReference) CreateWrappingKey(int bits, string tokenId);

    /// <summary>
    /// Unwraps material into a new key version inside the backend. Returns the bytes to persist and a
    /// check value (equal for equal material) used to allow only the same material again.
    /// </summary>
    (byte[] Persisted, byte[] CheckValue) UnwrapMaterial(KeyVersionRef version, ReadOnlySpan<byte> privateKeyReference, ReadOnlySpan<byte> wrapped,
        RSAEncryptionPadding padding);

    /// <summary>
    /// Destroys the wrapping key pair behind <paramref name="privateKeyReference"/> (an import token
    /// that expired or whose key is gone). Returns false when the reference is not this backend's;
    /// a pair already gone is not an error.
    /// </summary>
    bool DestroyWrappingKey(ReadOnlySpan<byte> privateKeyReference);
}
