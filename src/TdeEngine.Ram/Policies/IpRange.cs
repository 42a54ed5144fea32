using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace TdeEngine.Ram.Policies;

/// <summary>
/// An IP address or CIDR range (IPv4 or IPv6). IPv4 must be written as a dotted quad of decimal
/// numbers (<c>10.1.0.0/16</c>): the short and numeric forms that <see cref="IPAddress.TryParse(string, out IPAddress)"/>
/// also accepts (<c>10.1/16</c> is 10.0.0.1/16, <c>010.0.0.1</c> is octal) would make a policy mean
/// something else than it says. IPv6 takes no zone (<c>%eth0</c>). An IPv4-mapped IPv6 range
/// (<c>::ffff:10.0.0.0/104</c>) is kept as the IPv4 range it covers, since callers are compared as IPv4.
/// </summary>
internal readonly record struct IpRange(IPAddress Network, int PrefixLength)
{
    public static bool TryParse(string text, out IpRange range)
    {
        range = default;
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        var addressText = slash < 0 ? text : text[..slash];
        if (!(IsDottedQuad(addressText) || (addressText.Contains(':', StringComparison.Ordinal) && !addressText.Contains('%', StringComparison.Ordinal))) ||
            !IPAddress.TryParse(addressText, out var address) || (address.AddressFamily == AddressFamily.InterNetworkV6 && address.ScopeId != 0))
        {
            return false;
        }

        var max = address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128;
        var prefix = max;
        if (slash >= 0 && (!int.TryParse(text[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out prefix) || prefix > max))
        {
            return false;
        }

        if (address.IsIPv4MappedToIPv6)
        {
            // ::ffff:a.b.c.d/p covers IPv4 a.b.c.d/(p - 96); a shorter prefix would reach beyond the mapped space.
            if (prefix < 96)
            {
                return false;
            }

            address = address.MapToIPv4();
            prefix -= 96;
        }

        range = new IpRange(address, prefix);
        return true;
    }

    // Four decimal numbers 0-255 without leading zeros, nothing else.
    private static bool IsDottedQuad(string text)
    {
        var parts = text.Split('.');
        return parts.Length == 4 && parts.All(p => p.Length is >= 1 and <= 3 && p.All(char.IsAsciiDigit) && (p.Length == 1 || p[0] != '0') &&
                                                   int.Parse(p, NumberStyles.None, CultureInfo.InvariantCulture) <= 255);
    }

    public bool Contains(IPAddress address)
    {
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        var a = Network.GetAddressBytes();
        var b = address.GetAddressBytes();
        if (a.Length != b.Length)
        {
            return false;
        }

        var bits = PrefixLength;
        for (var i = 0; i < a.Length && bits > 0; i++, bits -= 8)
        {
            var mask = bits >= 8 ? 0xFF : (byte)(0xFF << (8 - bits));
            if ((a[i] & mask) != (b[i] & mask))
            {
                return false;
            }
        }

        return true;
    }
}
