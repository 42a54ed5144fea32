using System.Security.Cryptography;
using System.Text;
using TdeEngine.Kms.Crypto;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Kms.RootKeys;

/// <summary>
/// A root key kept in a file readable only by its owner (mode 0600). The file is created once,
/// atomically (written to a temp file, then linked into place without overwrite), so several
/// processes that start together agree on one key.
/// </summary>
/// <remarks>
/// <code>
/// root.key:  "TDRK" | version 1 | 16-byte root key id | 32-byte key          (53 bytes)
/// wrapped:   "TDRW" | version 1 | 16-byte root key id | 12-byte nonce | ciphertext | 16-byte tag
///            AAD = the 21 header bytes || caller context
/// </code>
/// </remarks>
public sealed class FileRootKeyProvider : IRootKeyProvider, IDisposable
{
    private const int FileLength = 4 + 1 + 16 + 32;
    private const int WrapHeaderLength = 4 + 1 + 16;
    private static ReadOnlySpan<byte> FileMagic => "TDRK"u8;
    private static ReadOnlySpan<byte> WrapMagic => "TDRW"u8;

    private readonly SecretBuffer _key;
    private readonly byte[] _id;

    private FileRootKeyProvider(SecretBuffer key, byte[] id)
    {
        _key = key;
        _id = id;
        RootKeyId = Convert.ToHexStringLower(id);
    }

    /// <inheritdoc />
    public string RootKeyId { get; }

    /// <summary>Opens the root key file at <paramref name="path"/>, creating it when absent.</summary>
    public static FileRootKeyProvider OpenOrCreate(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            TryCreate(path);
        }

        return Load(path);
    }

    private static void TryCreate(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temp = path + "." + Guid.NewGuid().ToString("N") + ".tmp";
        Span<byte> content = stackalloc byte[FileLength];
        try
        {
            FileMagic.CopyTo(content);
            content[4] = 1;
            RandomNumberGenerator.Fill(content[5..]);
            var options = new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Options = FileOptions.WriteThrough,
                BufferSize = 0,   // no FileStream buffer: the key goes from this span to the file, and no copy is left unwiped
            };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }

            using (var stream = new FileStream(temp, options))
            {
                stream.Write(content);
                stream.Flush(flushToDisk: true);
            }

            try
            {
                // Move without overwrite: if another process won the race, keep its key.
                File.Move(temp, path, overwrite: false);
            }
            catch (IOException) when (File.Exists(path))
            {
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(content);
            File.Delete(temp);
        }
    }

    private static FileRootKeyProvider Load(string path)
    {
        if (!OperatingSystem.IsWindows())
        {
            var mode = File.GetUnixFileMode(path);
            if ((mode & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) != 0)
            {
                throw new InvalidOperationException(
                    $"The root key file '{path}' is readable or writable by other users. Run 'chmod 600 {path}' and retry.");
            }
        }

        Span<byte> content = stackalloc byte[FileLength + 1];
        try
        {
            int read;
            // No FileStream buffer (bufferSize 0): the key is read straight into this span, which is wiped.
            using (var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0))
            {
                read = stream.ReadAtLeast(content, content.Length, throwOnEndOfStream: false);
            }

            if (read != FileLength || !content[..4].SequenceEqual(FileMagic) || content[4] != 1)
            {
                throw new InvalidDataException($"The root key file '{path}' is not a TdeEngine root key (wrong size or header). Restore it from backup.");
            }

            return new FileRootKeyProvider(SecretBuffer.CopyFrom(content.Slice(21, 32)), content.Slice(5, 16).ToArray());
        }
        finally
        {
            CryptographicOperations.ZeroMemory(content);
        }
    }

    /// <inheritdoc />
    public byte[] Wrap(ReadOnlySpan<byte> material, ReadOnlySpan<byte> context)
    {
        var output = new byte[WrapHeaderLength + Aes256GcmOneShot.NonceSize + material.Length + Aes256GcmOneShot.TagSize];
        WrapMagic.CopyTo(output);
        output[4] = 1;
        _id.CopyTo(output, 5);
        var nonce = output.AsSpan(WrapHeaderLength, Aes256GcmOneShot.NonceSize);
        RandomNumberGenerator.Fill(nonce);
        var aad = Concat(output.AsSpan(0, WrapHeaderLength), context);
        Aes256GcmOneShot.Encrypt(_key.Span, nonce, material, aad,
            output.AsSpan(WrapHeaderLength + Aes256GcmOneShot.NonceSize, material.Length), output.AsSpan(output.Length - Aes256GcmOneShot.TagSize));
        return output;
    }

    /// <inheritdoc />
    public SecretBuffer Unwrap(ReadOnlySpan<byte> wrapped, ReadOnlySpan<byte> context)
    {
        var minimum = WrapHeaderLength + Aes256GcmOneShot.NonceSize + Aes256GcmOneShot.TagSize;
        if (wrapped.Length < minimum || !wrapped[..4].SequenceEqual(WrapMagic) || wrapped[4] != 1)
        {
            throw new CryptographicException(wrapped.Length >= 4 && wrapped[..4].SequenceEqual("TDRH"u8)
                ? "The key material was wrapped by a root key in an HSM, not by this root.key file: configure the HSM and set TDE_HSM_ROOT_KEY=1 (docs/hsm.md)."
                : "The wrapped key material is not in the root-key wrap format: it was wrapped by another root key provider, or the key store is damaged.");
        }

        if (!wrapped.Slice(5, 16).SequenceEqual(_id))
        {
            throw new CryptographicException(
                $"The key material was wrapped by root key {Convert.ToHexStringLower(wrapped.Slice(5, 16))}, but this KMS holds root key {RootKeyId}. Restore the matching root.key file.");
        }

        var length = wrapped.Length - minimum;
        var result = new SecretBuffer(length);
        var ok = Aes256GcmOneShot.TryDecrypt(_key.Span, wrapped.Slice(WrapHeaderLength, Aes256GcmOneShot.NonceSize),
            wrapped.Slice(WrapHeaderLength + Aes256GcmOneShot.NonceSize, length), wrapped[^Aes256GcmOneShot.TagSize..],
            Concat(wrapped[..WrapHeaderLength], context), result.Span);
        if (!ok)
        {
            result.Dispose();
            throw new CryptographicException("The wrapped key material failed to authenticate under the root key; the key store was altered or damaged.");
        }

        return result;
    }

    /// <summary>Wipes the root key from memory.</summary>
    public void Dispose() => _key.Dispose();

    private static byte[] Concat(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var result = new byte[a.Length + b.Length];
        a.CopyTo(result);
        b.CopyTo(result.AsSpan(a.Length));
        return result;
    }
}
