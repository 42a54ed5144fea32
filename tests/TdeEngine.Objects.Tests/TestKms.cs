using TdeEngine.Kms;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Storage.Keys;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace TdeEngine.Objects.Tests;

/// <summary>One real embedded KMS (in a temp home) for the whole run. Tests that disable keys use their own CMKs.</summary>
public static class TestKms
{
    private static readonly Lazy<KeyManagementService> Shared = new(Create);

    public static KeyManagementService Kms => Shared.Value;

    public static KmsCallContext Caller => KmsCallContext.ForRoot(Kms.Options.DefaultAccountId);

    public static string RegionId => Kms.Options.RegionId;

    public static string AccountId => Kms.Options.DefaultAccountId;

    public static IDataKeyProvider Provider => new KmsDataKeyProvider(Kms);

    /// <summary>A new customer master key; returns its ARN.</summary>
    public static string CreateKey(string description) =>
        Kms.CreateKey(Caller, new CreateKeyRequest { Description = description }).Arn;

    public static void Disable(string keyArn) => Kms.DisableKey(Caller, keyArn);

    public static void Enable(string keyArn) => Kms.EnableKey(Caller, keyArn);

    /// <summary>The ARN of the OSS service key (created on first use if needed).</summary>
    public static string ServiceKeyArn()
    {
        using var dataKey = Provider.GenerateDataKey(LocalBucket.ServiceKeyAlias, TdeEngine.Kms.Envelope.EncryptionContext.Empty);
        return dataKey.KmsKeyArn;
    }

    private static KeyManagementService Create() => TdeEngine.Tests.Shared.ProcessKms.Open("tde-objects-kms-");
}
