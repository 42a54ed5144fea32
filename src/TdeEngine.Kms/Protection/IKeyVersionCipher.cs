using TdeEngine.Kms.Envelope;

namespace TdeEngine.Kms.Protection;

/// <summary>
/// Seals and opens ciphertext blobs under one key version. A software backend keeps the unwrapped
/// version key in memory it owns; an HSM backend keeps only a handle and runs the cipher inside the
/// device. Callers cannot tell them apart except through the algorithm they seal with.
/// </summary>
/// <remarks>Implementations are thread-safe. Disposing wipes any key material held.</remarks>
public interface IKeyVersionCipher : IDisposable
{
    /// <summary>The algorithm written into byte 5 of blobs sealed by this cipher.</summary>
    BlobAlgorithm Algorithm { get; }

    /// <summary>
    /// Seals <paramref name="plaintext"/>. Fills <paramref name="nonceRegion"/> (the salt and nonce
    /// fields of the blob, <see cref="CiphertextBlob.NonceRegionLength"/> bytes) with fresh random bytes.
    /// </summary>
    void Seal(ReadOnlySpan<byte> aad, ReadOnlySpan<byte> plaintext, Span<byte> nonceRegion, Span<byte> ciphertext, Span<byte> tag);

    /// <summary>Opens a blob sealed with <paramref name="algorithm"/>. False when it does not authenticate.</summary>
    bool TryOpen(BlobAlgorithm algorithm, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> nonceRegion, ReadOnlySpan<byte> ciphertext,
        ReadOnlySpan<byte> tag, Span<byte> plaintext);
}
