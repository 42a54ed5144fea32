using System.Text;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Kms.Protection;

/// <summary>
/// Software protection: version material is 32 random bytes, stored only wrapped by the root key
/// (AAD binds the key id and version id). Ciphers hold the unwrapped material in native memory.
/// </summary>
public sealed class SoftwareKeyProtectionBackend : IKeyProtectionBackend
{
    /// <summary>Bytes of material per key version (AES-256).</summary>
    public const int MaterialLength = 32;

    private readonly IRootKeyProvider _root;

    /// <summary>Creates the backend over a root key.</summary>
    public SoftwareKeyProtectionBackend(IRootKeyProvider root) => _root = root ?? throw new ArgumentNullException(nameof(root));

    /// <inheritdoc />
    public string ProtectionLevel => "SOFTWARE";

    /// <inheritdoc />
    public byte[] CreateMaterial(KeyVersionRef version)
    {
        using var material = SecretBuffer.Random(MaterialLength);
        return _root.Wrap(material.Span, WrapContext(version));
    }

    /// <inheritdoc />
    public byte[] ImportMaterial(KeyVersionRef version, ReadOnlySpan<byte> material)
    {
        if (material.Length != MaterialLength)
        {
            throw new ArgumentException("Imported key material must be 32 bytes (AES-256).", nameof(material));
        }

        return _root.Wrap(material, WrapContext(version));
    }

    /// <inheritdoc />
    public IKeyVersionCipher OpenCipher(KeyVersionRef version, ReadOnlySpan<byte> persisted) =>
        new SoftwareKeyVersionCipher(_root.Unwrap(persisted, WrapContext(version)));

    /// <inheritdoc />
    public void DestroyMaterial(KeyVersionRef version, ReadOnlySpan<byte> persisted)
    {
        // Software material exists only wrapped in the store; deleting the row destroys it.
    }

    internal static byte[] WrapContext(KeyVersionRef version) =>
        Encoding.UTF8.GetBytes($"TdeEngine/key-version/v1\0{version.KeyId}\0{version.KeyVersionId}");
}
