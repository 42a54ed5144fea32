using System.Text;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Objects;

/// <summary>
/// OSS object names and the file names that hold them. Every UTF-8 byte outside
/// <c>[A-Za-z0-9._-]</c> becomes <c>%XX</c> (upper-case hex), and so does a leading <c>.</c>: an
/// encoded name never contains a path separator, is never <c>.</c> or <c>..</c>, and never starts
/// with <c>.</c>, which is kept for the bucket's own files. The mapping is one-to-one.
/// </summary>
internal static class ObjectKeyEncoding
{
    /// <summary>OSS: an object name is 1 to 1023 bytes of UTF-8.</summary>
    public const int MaxKeyBytes = 1023;

    /// <summary>The longest file name most file systems take (NAME_MAX).</summary>
    public const int MaxFileNameBytes = 255;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Validates <paramref name="key"/> by OSS's rules and returns its file name, or throws <c>InvalidObjectName</c>.</summary>
    public static string Encode(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (key.Length == 0)
        {
            throw Invalid("it is empty; an object name is 1 to 1023 bytes.");
        }

        if (key[0] is '/' or '\\')
        {
            throw Invalid("it starts with '/' or '\\'; OSS object names are relative ('photos/2024/a.jpg').");
        }

        foreach (var c in key)
        {
            if (char.IsControl(c))
            {
                throw Invalid("it contains a control character.");
            }
        }

        byte[] bytes;
        try
        {
            bytes = StrictUtf8.GetBytes(key);
        }
        catch (EncoderFallbackException)
        {
            throw Invalid("it is not valid Unicode (an unpaired surrogate).");
        }

        if (bytes.Length > MaxKeyBytes)
        {
            throw Invalid($"it is {bytes.Length} bytes of UTF-8; OSS allows at most {MaxKeyBytes}.");
        }

        var name = new StringBuilder(bytes.Length);
        for (var i = 0; i < bytes.Length; i++)
        {
            var b = bytes[i];
            if (IsPlain(b) && !(b == '.' && i == 0))
            {
                name.Append((char)b);
            }
            else
            {
                name.Append('%').Append(Convert.ToHexString([b]));
            }
        }

        if (name.Length > MaxFileNameBytes)
        {
            throw Invalid($"its file name in a local bucket would be {name.Length} bytes (each byte outside A-Z a-z 0-9 . _ - takes 3), and file systems allow {MaxFileNameBytes}. Use a shorter name.");
        }

        return name.ToString();
    }

    /// <summary>The object name a file name holds, or null when the file is not an object (bucket files, foreign files).</summary>
    public static string? Decode(string fileName)
    {
        if (fileName.Length == 0 || fileName.Length > MaxFileNameBytes || fileName[0] == '.')
        {
            return null;
        }

        var bytes = new List<byte>(fileName.Length);
        for (var i = 0; i < fileName.Length; i++)
        {
            var c = fileName[i];
            if (c == '%')
            {
                if (i + 2 >= fileName.Length || !IsUpperHex(fileName[i + 1]) || !IsUpperHex(fileName[i + 2]))
                {
                    return null;
                }

                bytes.Add(Convert.FromHexString(fileName.AsSpan(i + 1, 2))[0]);
                i += 2;
            }
            else if (c < 0x80 && IsPlain((byte)c))
            {
                bytes.Add((byte)c);
            }
            else
            {
                return null;
            }
        }

        string key;
        try
        {
            key = StrictUtf8.GetString([.. bytes]);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }

        // Only the canonical spelling counts (no "%41" for "A"), so a key has one file.
        try
        {
            return Encode(key) == fileName ? key : null;
        }
        catch (TdeStorageException)
        {
            return null;
        }
    }

    private static bool IsPlain(byte b) => b is (>= (byte)'A' and <= (byte)'Z') or (>= (byte)'a' and <= (byte)'z') or (>= (byte)'0' and <= (byte)'9')
        or (byte)'.' or (byte)'_' or (byte)'-';

    private static bool IsUpperHex(char c) => c is (>= '0' and <= '9') or (>= 'A' and <= 'F');

    private static TdeStorageException Invalid(string why) => new(TdeStorageException.Codes.InvalidObjectName,
        $"The object name is invalid: {why} OSS object names are 1 to 1023 bytes of UTF-8, do not start with '/' or '\\', and contain no control characters.");
}
