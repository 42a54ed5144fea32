using System.Globalization;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using TdeEngine.Kms.Errors;

namespace TdeEngine.Kms.KeyManagement;

/// <summary>Ids, ARNs, alias names and intervals: how they are made, parsed and validated.</summary>
internal static partial class KeyIdentifiers
{
    public const string AliasPrefix = "alias/";
    public const string ServiceAliasPrefix = "alias/acs/";

    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";

    public static string NewDefaultKeyId() => Guid.NewGuid().ToString("D");

    public static string NewInstanceKeyId() => "key-" + RandomToken(24);

    public static string NewKeyVersionId() => Guid.NewGuid().ToString("D");

    public static string NewInstanceId() => "kst-" + RandomToken(20);

    public static string KeyArn(string regionId, string accountId, string keyId) => $"acs:kms:{regionId}:{accountId}:key/{keyId}";

    public static string AliasArn(string regionId, string accountId, string aliasName) =>
        $"acs:kms:{regionId}:{accountId}:{aliasName}";

    public static string InstanceArn(string regionId, string accountId, string instanceId) =>
        $"acs:kms:{regionId}:{accountId}:keystore/{instanceId}";   // Alibaba names a KMS instance keystore/ in its ARN

    public static bool IsAlias(string value) => value.StartsWith(AliasPrefix, StringComparison.Ordinal);

    /// <summary>The product code of a service alias (<c>alias/acs/rds</c> gives <c>rds</c>), else null.</summary>
    public static string? ServiceProduct(string aliasName)
    {
        var match = ServiceAliasPattern().Match(aliasName);
        return match.Success ? match.Groups[1].Value : null;
    }

    public static void ValidateAliasName(string aliasName)
    {
        if (!AliasPattern().IsMatch(aliasName))
        {
            throw KmsErrors.InvalidParameter("AliasName",
                "an alias is 'alias/' followed by 1 to 255 letters, digits, '_', '-' or '/', for example alias/orders-db.");
        }
    }

    /// <summary>
    /// Splits an identifier into (account, kind, name) when it is an ARN in this region. Returns
    /// false when it is not an ARN. An ARN of another region never resolves.
    /// </summary>
    public static bool TryParseArn(string value, string regionId, out string accountId, out string resource)
    {
        accountId = "";
        resource = "";
        if (!value.StartsWith("acs:kms:", StringComparison.Ordinal))
        {
            return false;
        }

        var parts = value.Split(':', 5);
        if (parts.Length != 5 || parts[2] != regionId || parts[3].Length == 0)
        {
            throw KmsErrors.KeyNotFound(value);
        }

        accountId = parts[3];
        resource = parts[4];
        return true;
    }

    /// <summary>Parses <c>7d</c>, <c>168h</c>, <c>604800s</c> (units d, h, m, s).</summary>
    public static TimeSpan ParseInterval(string value, string parameter)
    {
        var match = IntervalPattern().Match(value.Trim());
        if (!match.Success || !long.TryParse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var n))
        {
            throw KmsErrors.InvalidParameter(parameter, "use an integer with a unit d, h, m or s, for example 30d or 604800s.");
        }

        var seconds = n * match.Groups[2].Value switch
        {
            "d" => 86400L,
            "h" => 3600L,
            "m" => 60L,
            _ => 1L,
        };
        // Nine digits of days would overflow TimeSpan; no interval the KMS takes is near a century.
        return seconds <= MaxIntervalSeconds
            ? TimeSpan.FromSeconds(seconds)
            : throw KmsErrors.InvalidParameter(parameter, $"'{value}' is too long; the longest interval accepted is 36500d.");
    }

    private const long MaxIntervalSeconds = 36500L * 86400;

    public static string FormatInterval(TimeSpan interval) => ((long)interval.TotalSeconds).ToString(CultureInfo.InvariantCulture) + "s";

    private static string RandomToken(int length)
    {
        Span<char> chars = stackalloc char[length];
        for (var i = 0; i < length; i++)
        {
            chars[i] = Alphabet[RandomNumberGenerator.GetInt32(Alphabet.Length)];
        }

        return new string(chars);
    }

    [GeneratedRegex("^alias/[A-Za-z0-9_/-]{1,255}$")]
    private static partial Regex AliasPattern();

    [GeneratedRegex("^alias/acs/([a-z][a-z0-9-]{0,31})$")]
    private static partial Regex ServiceAliasPattern();

    [GeneratedRegex("^([0-9]{1,9})([dhms])$")]
    private static partial Regex IntervalPattern();
}
