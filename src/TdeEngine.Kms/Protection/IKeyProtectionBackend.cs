namespace TdeEngine.Kms.Protection;

/// <summary>
/// Where the material of key versions lives and where their cryptography runs. The software
/// backend wraps material under the root key and stores the wrapped bytes; a PKCS#11 backend keeps
/// the material inside the token and stores a reference. The KMS never looks inside
/// <c>persisted</c> bytes.
/// </summary>
/// <remarks>Implementations are thread-safe.</remarks>
public interface IKeyProtectionBackend
{
    /// <summary><c>SOFTWARE</c> or <c>HSM</c>, as shown in <c>KeyMetadata.ProtectionLevel</c>.</summary>
    string ProtectionLevel { get; }

    /// <summary>Generates new material for a version and returns the bytes to persist for it.</summary>
    byte[] CreateMaterial(KeyVersionRef version);

    /// <summary>Takes imported (BYOK) material for a version and returns the bytes to persist.</summary>
    byte[] ImportMaterial(KeyVersionRef version, ReadOnlySpan<byte> material);

    /// <summary>Opens a cipher over a persisted version. The caller disposes it.</summary>
    IKeyVersionCipher OpenCipher(KeyVersionRef version, ReadOnlySpan<byte> persisted);

    /// <summary>Destroys material held outside the store (HSM objects). A no-op for software keys.</summary>
    void DestroyMaterial(KeyVersionRef version, ReadOnlySpan<byte> persisted);
}
