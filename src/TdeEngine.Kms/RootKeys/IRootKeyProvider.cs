using TdeEngine.Kms.Secrets;

namespace TdeEngine.Kms.RootKeys;

/// <summary>
/// The root of the key hierarchy: it wraps the material of software-protected key versions before
/// it is stored. The default keeps a 256-bit key in a 0600 file under <c>$TDE_HOME</c>; an HSM can
/// hold it instead behind the same interface.
/// </summary>
/// <remarks>Implementations are thread-safe.</remarks>
public interface IRootKeyProvider
{
    /// <summary>A stable id of the root key, written in front of everything it wraps.</summary>
    string RootKeyId { get; }

    /// <summary>Wraps <paramref name="material"/>, binding <paramref name="context"/> as AAD.</summary>
    byte[] Wrap(ReadOnlySpan<byte> material, ReadOnlySpan<byte> context);

    /// <summary>Unwraps into memory the caller owns and disposes. Throws when the bytes do not authenticate.</summary>
    SecretBuffer Unwrap(ReadOnlySpan<byte> wrapped, ReadOnlySpan<byte> context);
}
