namespace TdeEngine.Kms.Envelope;

/// <summary>The sealing algorithm named by byte 5 of a ciphertext blob (see docs/file-format.md).</summary>
public enum BlobAlgorithm : byte
{
    /// <summary>
    /// AES-256-GCM directly under the key version, with a random 96-bit nonce. Used where the key
    /// never leaves a device (HSM), so no subkey can be derived outside it.
    /// </summary>
    Aes256Gcm = 1,

    /// <summary>
    /// AES-256-GCM under a per-blob subkey: HKDF-SHA256(ikm = key version material, salt = 16 random
    /// bytes, info = "TdeEngine/kms-blob/v1"). The random salt lifts the 2^32 random-nonce limit of
    /// GCM, so a software key version can seal an unbounded number of blobs.
    /// </summary>
    HkdfSha256Aes256Gcm = 2,
}
