using TdeEngine.Kms.Envelope;

namespace TdeEngine.Objects;

/// <summary>What the header of a sealed object says, and the plaintext length its size implies. Holds no secret.</summary>
/// <param name="ObjectId">The object's random id, 32 lower-case hex digits. Bound into every chunk.</param>
/// <param name="PlaintextLength">The plaintext length, derived from the stream length (the header holds none).</param>
/// <param name="ChunkSize">Plaintext bytes per chunk (all but the last chunk hold exactly this many).</param>
/// <param name="Cipher">The chunk cipher: <c>AES-256-GCM</c>.</param>
/// <param name="KmsKeyArn">The ARN of the KMS key that wraps the object's data key.</param>
/// <param name="Context">The EncryptionContext the data key and the chunks are bound to.</param>
/// <param name="FormatVersion">The format version of the header (1).</param>
public sealed record SealedObjectInfo(string ObjectId, long PlaintextLength, int ChunkSize, string Cipher, string KmsKeyArn,
    EncryptionContext Context, int FormatVersion)
{
    /// <summary>The size of the fixed header in bytes (a multiple of 1024); the chunks start here.</summary>
    public int HeaderSize { get; init; }

    /// <summary>Non-secret, authenticated pairs the writer recorded (LocalBucket: the SSE algorithm). Usually empty.</summary>
    public EncryptionContext Attributes { get; init; } = EncryptionContext.Empty;

    internal static SealedObjectInfo From(SealedObjectHeader header, long plaintextLength) => new(
        header.ObjectIdHex, plaintextLength, header.ChunkSize, SealedObjectHeader.CipherName, header.KmsKeyArn, header.Context,
        SealedObjectHeader.Version)
    {
        HeaderSize = header.HeaderSize,
        Attributes = header.Attributes,
    };
}
