namespace TdeEngine.Storage.Pages;

/// <summary>
/// One AEAD keyed with one DEK: the only thing that touches page bytes. Implementations are
/// thread-safe, allocate nothing per call, and wipe their key state on dispose.
/// </summary>
internal interface IPageCipher : IDisposable
{
    PageCipherSuite Suite { get; }

    void Seal(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag);

    /// <summary>
    /// False (and <paramref name="plaintext"/> zeroed) when the page does not authenticate.
    /// <paramref name="plaintext"/> may be the same memory as <paramref name="ciphertext"/>.
    /// </summary>
    bool Open(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext);
}
