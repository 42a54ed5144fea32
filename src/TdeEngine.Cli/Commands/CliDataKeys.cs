using TdeEngine.Kms.Identity;
using TdeEngine.Sqlite;
using TdeEngine.Storage.Keys;

namespace TdeEngine.Cli.Commands;

/// <summary>The data keys of <c>tde disk</c> and <c>tde oss</c>: requested as the CLI's root, through the gateway.</summary>
internal static class CliDataKeys
{
    /// <summary>
    /// A provider whose GenerateDataKey, Decrypt and ReEncrypt go through the gateway as
    /// <see cref="CliServices.RootContext"/>, each with its own request id, so they are authorized by
    /// RAM and recorded in the audit trail like any <c>tde kms</c> call.
    /// </summary>
    public static IDataKeyProvider AsRoot(CliServices services) =>
        new GatewayDataKeyProvider(services.Gateway, () => services.RootContext with { RequestId = KmsCallContext.NewRequestId() });
}
