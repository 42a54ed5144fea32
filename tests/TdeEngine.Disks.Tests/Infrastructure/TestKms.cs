using TdeEngine.Kms;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Storage.Keys;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace TdeEngine.Disks.Tests.Infrastructure;

/// <summary>One real embedded KMS (its own temp home) for the whole test run.</summary>
internal static class TestKms
{
    private static readonly Lazy<KeyManagementService> Shared = new(Create);

    public static KeyManagementService Kms => Shared.Value;

    public static KmsCallContext Caller => KmsCallContext.ForRoot(Kms.Options.DefaultAccountId);

    /// <summary>The provider a disk gets its DEK from, as the root of the default account.</summary>
    public static IDataKeyProvider Keys => new KmsDataKeyProvider(Kms);

    /// <summary>A new customer master key; returns its id.</summary>
    public static string NewKey() => Kms.CreateKey(Caller, new CreateKeyRequest { Description = "disk test" }).KeyId;

    public static string Arn(string keyId) => Kms.DescribeKey(Caller, keyId).Arn;

    private static KeyManagementService Create() => TdeEngine.Tests.Shared.ProcessKms.Open("tde-disk-kms-");
}
