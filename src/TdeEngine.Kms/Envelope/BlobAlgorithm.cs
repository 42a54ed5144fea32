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
    /// AES-256-GCM under a per-blob subkey: the first 32 bytes of AES-256-CTR keystream of the key
    /// version under the counter block <c>salt || 00000002</c>, where <c>salt</c> is 12 random bytes
    /// stored in the blob; then a random 96-bit GCM nonce. Every blob has its own key, so a software
    /// key version can seal far more than the 2^32 blobs that random nonces under one key allow.
    /// </summary>
    CtrSubkeyAes256Gcm = 2,
}
