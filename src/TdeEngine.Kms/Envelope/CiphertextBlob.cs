using System.Buffers;
using System.Text;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Protection;

namespace TdeEngine.Kms.Envelope;

/// <summary>
/// The self-describing ciphertext blob that Encrypt and GenerateDataKey return. It names its key
/// and key version, so Decrypt needs no KeyId and old versions keep decrypting after rotation.
/// </summary>
/// <remarks>
/// <code>
///  offset  size  field
///  0       4     magic "TKMS" (54 4B 4D 53)
///  4       1     format version = 1
///  5       1     algorithm (1 = AES-256-GCM, 2 = AES-CTR-derived subkey + AES-256-GCM)
///  6       1     L1 = length of key id (1..128)
///  7       L1    key id, ASCII
///  7+L1    1     L2 = length of key version id (1..128)
///  8+L1    L2    key version id, ASCII
///  ---- header ends at H = 8+L1+L2; AAD = bytes[0..H) || canonical EncryptionContext ----
///  H       12    salt (algorithm 2 only)
///  .       12    nonce
///  .       N     ciphertext
///  end-16  16    GCM tag
/// </code>
/// See docs/file-format.md for how to open a blob with standard tools.
/// </remarks>
public static class CiphertextBlob
{
    /// <summary>The four magic bytes, "TKMS".</summary>
    public static ReadOnlySpan<byte> Magic => "TKMS"u8;

    /// <summary>The only format version written.</summary>
    public const byte FormatVersion = 1;

    /// <summary>Bytes of salt used by <see cref="BlobAlgorithm.CtrSubkeyAes256Gcm"/>.</summary>
    public const int SaltLength = 12;

    /// <summary>GCM nonce bytes.</summary>
    public const int NonceLength = 12;

    /// <summary>GCM tag bytes.</summary>
    public const int TagLength = 16;

    /// <summary>Longest key id or key version id that fits the format.</summary>
    public const int MaxIdLength = 128;

    private const int StackAadLimit = 1024;

    /// <summary>Bytes of salt plus nonce that <paramref name="algorithm"/> stores.</summary>
    public static int NonceRegionLength(BlobAlgorithm algorithm) => algorithm switch
    {
        BlobAlgorithm.Aes256Gcm => NonceLength,
        BlobAlgorithm.CtrSubkeyAes256Gcm => SaltLength + NonceLength,
        _ => throw new ArgumentOutOfRangeException(nameof(algorithm)),
    };

    /// <summary>Seals <paramref name="plaintext"/> into a new blob.</summary>
    public static byte[] Seal(IKeyVersionCipher cipher, string keyId, string keyVersionId, EncryptionContext context, ReadOnlySpan<byte> plaintext)
    {
        var l1 = Encoding.ASCII.GetByteCount(keyId);
        var l2 = Encoding.ASCII.GetByteCount(keyVersionId);
        if (l1 is 0 or > MaxIdLength || l2 is 0 or > MaxIdLength)
        {
            throw new ArgumentException("Key ids and key version ids must be 1 to 128 ASCII characters.");
        }

        var headerLength = 8 + l1 + l2;
        var nonceRegion = NonceRegionLength(cipher.Algorithm);
        var blob = new byte[headerLength + nonceRegion + plaintext.Length + TagLength];
        Magic.CopyTo(blob);
        blob[4] = FormatVersion;
        blob[5] = (byte)cipher.Algorithm;
        blob[6] = (byte)l1;
        Encoding.ASCII.GetBytes(keyId, blob.AsSpan(7, l1));
        blob[7 + l1] = (byte)l2;
        Encoding.ASCII.GetBytes(keyVersionId, blob.AsSpan(8 + l1, l2));

        var body = blob.AsSpan(headerLength);
        Span<byte> stack = stackalloc byte[StackAadLimit];
        using var aad = new AadBuilder(blob.AsSpan(0, headerLength), context, stack);
        cipher.Seal(aad.Span, plaintext, body[..nonceRegion], body.Slice(nonceRegion, plaintext.Length), body[^TagLength..]);
        return blob;
    }

    /// <summary>Reads the header of a blob. Throws <c>InvalidCiphertext</c> when it is not a well-formed blob.</summary>
    public static BlobHeader ReadHeader(ReadOnlySpan<byte> blob)
    {
        if (blob.Length < 8 || !blob[..4].SequenceEqual(Magic) || blob[4] != FormatVersion)
        {
            throw KmsErrors.InvalidCiphertext();
        }

        var algorithm = (BlobAlgorithm)blob[5];
        if (algorithm is not (BlobAlgorithm.Aes256Gcm or BlobAlgorithm.CtrSubkeyAes256Gcm))
        {
            throw KmsErrors.InvalidCiphertext();
        }

        int l1 = blob[6];
        if (l1 == 0 || blob.Length < 8 + l1)
        {
            throw KmsErrors.InvalidCiphertext();
        }

        int l2 = blob[7 + l1];
        var headerLength = 8 + l1 + l2;
        var nonceRegion = NonceRegionLength(algorithm);
        if (l2 == 0 || blob.Length < headerLength + nonceRegion + TagLength)
        {
            throw KmsErrors.InvalidCiphertext();
        }

        var keyId = blob.Slice(7, l1);
        var versionId = blob.Slice(8 + l1, l2);
        if (!Ascii.IsValid(keyId) || !Ascii.IsValid(versionId))
        {
            throw KmsErrors.InvalidCiphertext();
        }

        return new BlobHeader(Encoding.ASCII.GetString(keyId), Encoding.ASCII.GetString(versionId), algorithm, headerLength,
            blob.Length - headerLength - nonceRegion - TagLength);
    }

    /// <summary>
    /// Opens a blob whose header was read with <see cref="ReadHeader"/>. Writes
    /// <see cref="BlobHeader.PlaintextLength"/> bytes to <paramref name="plaintext"/>; throws
    /// <c>InvalidCiphertext</c> (naming the key) when the blob or the context does not authenticate.
    /// </summary>
    public static void Open(IKeyVersionCipher cipher, BlobHeader header, ReadOnlySpan<byte> blob, EncryptionContext context, Span<byte> plaintext)
    {
        var nonceRegion = NonceRegionLength(header.Algorithm);
        var body = blob[header.HeaderLength..];
        Span<byte> stack = stackalloc byte[StackAadLimit];
        using var aad = new AadBuilder(blob[..header.HeaderLength], context, stack);
        var ok = cipher.TryOpen(header.Algorithm, aad.Span, body[..nonceRegion], body.Slice(nonceRegion, header.PlaintextLength),
            body[^TagLength..], plaintext[..header.PlaintextLength]);
        if (!ok)
        {
            throw KmsErrors.InvalidCiphertext(header.KeyId);
        }
    }

    // AAD = header || canonical context. Built in the caller's stack buffer when small, else in a rented one.
    private readonly ref struct AadBuilder
    {
        private readonly byte[]? _rented;

        public AadBuilder(ReadOnlySpan<byte> header, EncryptionContext context, Span<byte> stack)
        {
            var ec = context.CanonicalBytes;
            var length = header.Length + ec.Length;
            Span = length <= stack.Length ? stack[..length] : (_rented = ArrayPool<byte>.Shared.Rent(length)).AsSpan(0, length);
            header.CopyTo(Span);
            ec.CopyTo(Span[header.Length..]);
        }

        public Span<byte> Span { get; }

        public void Dispose()
        {
            if (_rented is not null)
            {
                ArrayPool<byte>.Shared.Return(_rented);
            }
        }
    }
}

/// <summary>The parsed header of a ciphertext blob.</summary>
/// <param name="KeyId">The key that sealed the blob.</param>
/// <param name="KeyVersionId">The key version that sealed the blob.</param>
/// <param name="Algorithm">The sealing algorithm.</param>
/// <param name="HeaderLength">Bytes of header (the AAD prefix).</param>
/// <param name="PlaintextLength">Bytes of plaintext the blob holds.</param>
public readonly record struct BlobHeader(string KeyId, string KeyVersionId, BlobAlgorithm Algorithm, int HeaderLength, int PlaintextLength);
