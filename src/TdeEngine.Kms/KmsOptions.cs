namespace TdeEngine.Kms;

/// <summary>Settings of an embedded KMS. Every default is documented and validated in <see cref="Validate"/>.</summary>
public sealed class KmsOptions
{
    /// <summary>Folder that holds <c>kms.db</c> and <c>root.key</c>. Default: <c>$TDE_HOME</c>, else <c>./.tde</c>.</summary>
    public string Home { get; set; } = DefaultHome();

    /// <summary>The region this KMS serves. Default <c>cn-hangzhou</c>.</summary>
    public string RegionId { get; set; } = "cn-hangzhou";

    /// <summary>The account used by in-process callers and the CLI when none is given. Default <c>1234567890123456</c>.</summary>
    public string DefaultAccountId { get; set; } = "1234567890123456";

    /// <summary>
    /// How long cached key metadata may be used before the store is asked whether another process
    /// changed it. Changes made through this instance apply at once. Default 1 second; zero checks on
    /// every call.
    /// </summary>
    public TimeSpan StoreRefreshInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The clock. Deletion windows, rotation and throttling all read it.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>The <c>$TDE_HOME</c> default: the environment variable, else <c>./.tde</c>.</summary>
    public static string DefaultHome()
    {
        var home = Environment.GetEnvironmentVariable("TDE_HOME");
        return string.IsNullOrWhiteSpace(home) ? Path.Combine(Environment.CurrentDirectory, ".tde") : home;
    }

    /// <summary>Throws when a setting is out of range.</summary>
    public void Validate()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(Home);
        ArgumentException.ThrowIfNullOrWhiteSpace(RegionId);
        ArgumentException.ThrowIfNullOrWhiteSpace(DefaultAccountId);
        ArgumentNullException.ThrowIfNull(TimeProvider);
        ArgumentOutOfRangeException.ThrowIfLessThan(StoreRefreshInterval, TimeSpan.Zero);
    }
}
