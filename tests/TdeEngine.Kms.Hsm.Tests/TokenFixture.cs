using System.Diagnostics;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms;
using TdeEngine.Kms.KeyManagement;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace TdeEngine.Kms.Hsm.Tests;

/// <summary>
/// A real SoftHSM2 token in a temp directory (SOFTHSM2_CONF), a PKCS#11 backend logged in to it,
/// and a KMS that uses the backend for hardware-protected keys.
/// </summary>
public sealed class SoftHsmFixture : IDisposable
{
    public const string Module = "/usr/lib/softhsm/libsofthsm2.so";
    public const string Label = "tde-test";

    public SoftHsmFixture()
    {
        if (!File.Exists(Module))
        {
            throw new InvalidOperationException($"SoftHSM2 is not installed ({Module} is missing): run 'apt-get install -y softhsm2' (test.sh does).");
        }

        Directory.CreateDirectory(Path.Combine(Root, "tokens"));
        var conf = Path.Combine(Root, "softhsm2.conf");
        File.WriteAllText(conf, $"directories.tokendir = {Path.Combine(Root, "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\n");
        // SoftHSM reads SOFTHSM2_CONF with getenv(); .NET's Environment.SetEnvironmentVariable does not
        // change the native environment on Unix, so set it there too.
        Environment.SetEnvironmentVariable("SOFTHSM2_CONF", conf);
        _ = setenv("SOFTHSM2_CONF", conf, 1);
        Environment.SetEnvironmentVariable("TDE_HSM_PIN", "1234");
        var init = new ProcessStartInfo("softhsm2-util") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "--init-token", "--free", "--label", Label, "--pin", "1234", "--so-pin", "5678" })
        {
            init.ArgumentList.Add(arg);
        }

        init.Environment["SOFTHSM2_CONF"] = conf;
        using (var process = Process.Start(init)!)
        {
            var error = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException("softhsm2-util --init-token failed: " + error);
            }
        }

        Backend = new Pkcs11KeyProtectionBackend(new HsmOptions { ModulePath = Module, TokenLabel = Label });
        Kms = KeyManagementService.Open(new KmsOptions { Home = Path.Combine(Root, "kms"), TimeProvider = Time }, additionalBackends: [Backend]);
    }

    public string Root { get; } = Path.Combine(Path.GetTempPath(), "tde-hsm-" + Guid.NewGuid().ToString("N"));

    /// <summary>The KMS clock, so tests can move past token and material expiry.</summary>
    public Microsoft.Extensions.Time.Testing.FakeTimeProvider Time { get; } = new(DateTimeOffset.UtcNow);

    public Pkcs11KeyProtectionBackend Backend { get; }

    public KeyManagementService Kms { get; }

    [System.Runtime.InteropServices.DllImport("libc", CharSet = System.Runtime.InteropServices.CharSet.Ansi)]
    private static extern int setenv(string name, string value, int overwrite);

    public void Dispose()
    {
        Kms.Dispose();
        Backend.Dispose();
        SqliteConnection.ClearAllPools();
        Directory.Delete(Root, recursive: true);
    }
}

[CollectionDefinition("SoftHSM")]
public sealed class SoftHsmCollection : ICollectionFixture<SoftHsmFixture>;
