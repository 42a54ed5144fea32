using TdeEngine.Audit;
using TdeEngine.Gateway;
using TdeEngine.Kms;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.RootKeys;
using TdeEngine.Ram;

namespace TdeEngine.Cli.Commands;

/// <summary>The KMS, RAM and audit trail under $TDE_HOME, composed behind the gateway, for one CLI call.</summary>
internal sealed class CliServices : IDisposable
{
    private readonly IRootKeyProvider _root;

    private readonly Kms.Hsm.Pkcs11KeyProtectionBackend? _hsm;

    private CliServices(KmsOptions options)
    {
        // Settings first: a bad one is refused before anything under $TDE_HOME is created.
        var segmentBytes = AuditSegmentBytes();
        // An HSM for hardware-protected keys when one is configured (docs/hsm.md).
        if (Environment.GetEnvironmentVariable("TDE_HSM_MODULE") is { Length: > 0 } module)
        {
            _hsm = new Kms.Hsm.Pkcs11KeyProtectionBackend(new Kms.Hsm.HsmOptions
            {
                ModulePath = module,
                TokenLabel = Environment.GetEnvironmentVariable("TDE_HSM_TOKEN") ?? "tde",
                PinFile = Environment.GetEnvironmentVariable("TDE_HSM_PIN_FILE"),
            });
        }

        // The root key in the token instead of $TDE_HOME/root.key when asked (TDE_HSM_ROOT_KEY=1).
        if (Environment.GetEnvironmentVariable("TDE_HSM_ROOT_KEY") is "1" or "true")
        {
            _root = global::TdeEngine.Kms.Hsm.HsmRootKeyProvider.OpenOrCreate(_hsm ?? throw new InvalidOperationException(
                "TDE_HSM_ROOT_KEY asks for the root key in an HSM, but TDE_HSM_MODULE is not set (docs/hsm.md)."));
        }
        else
        {
            _root = FileRootKeyProvider.OpenOrCreate(Path.Combine(options.Home, "root.key"));
        }

        Kms = KeyManagementService.Open(options, _root, _hsm is null ? null : [_hsm]);
        Ram = RamService.Open(options.Home, _root);
        Audit = AuditTrail.Open(options.Home, _root, segmentBytes: segmentBytes);
        Gateway = new KmsGateway(Kms, Ram, Audit);
        RootContext = KmsCallContext.ForRoot(options.DefaultAccountId, userAgent: "tde-cli");
    }

    // TDE_AUDIT_SEGMENT_MB: the size at which the active audit file is sealed as a segment (0: never).
    private static long AuditSegmentBytes()
    {
        var value = Environment.GetEnvironmentVariable("TDE_AUDIT_SEGMENT_MB");
        if (string.IsNullOrEmpty(value))
        {
            return AuditTrail.DefaultSegmentBytes;
        }

        return long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var mb) && mb <= 1L << 20
            ? mb << 20
            : throw new CliUsageException($"TDE_AUDIT_SEGMENT_MB must be a whole number of MiB from 0 (never seal) to 1048576, not '{value}'.");
    }

    public KeyManagementService Kms { get; }

    public RamService Ram { get; }

    public AuditTrail Audit { get; }

    public KmsGateway Gateway { get; }

    /// <summary>The CLI acts as the root of the default account (the local administrator).</summary>
    public KmsCallContext RootContext { get; }

    public static CliServices Open()
    {
        var services = new CliServices(new KmsOptions());
        // The CLI is often the only process running: let it carry out due deletions and rotations.
        services.Kms.RunHousekeeping();
        return services;
    }

    public void Dispose()
    {
        Audit.Dispose();
        Ram.Dispose();
        Kms.Dispose();
        (_root as IDisposable)?.Dispose();
        _hsm?.Dispose();
    }
}
