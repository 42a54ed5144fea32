using TdeEngine.Kms.Crypto;

namespace TdeEngine.Kms.Identity;

/// <summary>
/// Random (version 4) UUIDs for request and event ids, drawn from <see cref="FastRandom"/>: every
/// call and every audit event needs one, and <see cref="Guid.NewGuid"/> costs a system call each.
/// </summary>
public static class Uuid
{
    /// <summary>A new version 4 UUID in the <c>8-4-4-4-12</c> form, lower or upper case.</summary>
    public static string NewV4(bool upperCase = false)
    {
        Span<byte> bytes = stackalloc byte[16];
        FastRandom.Fill(bytes);
        bytes[6] = (byte)((bytes[6] & 0x0F) | 0x40);   // version 4
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80);   // RFC 4122 variant
        var hex = upperCase ? "0123456789ABCDEF" : "0123456789abcdef";
        Span<char> text = stackalloc char[36];
        var at = 0;
        for (var i = 0; i < 16; i++)
        {
            if (i is 4 or 6 or 8 or 10)
            {
                text[at++] = '-';
            }

            text[at++] = hex[bytes[i] >> 4];
            text[at++] = hex[bytes[i] & 15];
        }

        return new string(text);
    }
}
