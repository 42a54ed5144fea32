using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;
using TdeEngine.Kms;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Hsm;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;

namespace TdeEngine.Benchmarks;

/// <summary>
/// GenerateDataKey on an HSM key (SoftHSM2) next to the ceiling: a raw PKCS#11 C_Encrypt
/// (CKM_AES_GCM, 32 bytes, fresh IV, 30-byte AAD) on a key in the same token, one thread each,
/// measured in the same run. Needs softhsm2 installed; makes its own token in a temp directory.
/// </summary>
internal static class HsmThroughput
{
    public static int Run(string[] args)
    {
        var seconds = args.Length > 1 && args[0] == "--seconds" ? int.Parse(args[1], CultureInfo.InvariantCulture) : 5;
        const string module = "/usr/lib/softhsm/libsofthsm2.so";
        var root = Path.Combine(Path.GetTempPath(), "tde-hsm-bench-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(root, "tokens"));
        var conf = Path.Combine(root, "softhsm2.conf");
        File.WriteAllText(conf, $"directories.tokendir = {Path.Combine(root, "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\n");
        _ = setenv("SOFTHSM2_CONF", conf, 1);
        _ = setenv("TDE_HSM_PIN", "1234", 1);
        Environment.SetEnvironmentVariable("TDE_HSM_PIN", "1234");
        var init = Process.Start(new ProcessStartInfo("softhsm2-util", ["--init-token", "--free", "--label", "bench", "--pin", "1234", "--so-pin", "5678"])
        {
            RedirectStandardOutput = true,
            Environment = { ["SOFTHSM2_CONF"] = conf },
        })!;
        init.WaitForExit();
        try
        {
            // The ceiling: the same token, a raw C_Encrypt per operation (opened first, so it is closed last).
            Pkcs11KeyProtectionBackend.EnsureNativeLoader();
            var factories = new Pkcs11InteropFactories();
            // Not disposed: a second handle on the same module shares its Cryptoki state, and the backend's
            // Dispose finalizes it for the whole process.
            var library = factories.Pkcs11LibraryFactory.LoadPkcs11Library(factories, module, AppType.MultiThreaded);
            var slot = library.GetSlotList(SlotsType.WithTokenPresent).First(s => s.GetTokenInfo().Label.Trim() == "bench");
            var session = slot.OpenSession(SessionType.ReadWrite);
            using var backend = new Pkcs11KeyProtectionBackend(new HsmOptions { ModulePath = module, TokenLabel = "bench", SessionPoolSize = 2 });
            using var kms = KeyManagementService.Open(new KmsOptions { Home = Path.Combine(root, "kms") }, additionalBackends: [backend]);
            var me = KmsCallContext.ForRoot(kms.Options.DefaultAccountId);
            // A default key with ProtectionLevel HSM: no instance, so no QPS Spec caps the measurement.
            var keyId = kms.CreateKey(me, new CreateKeyRequest { ProtectionLevel = "HSM" }).KeyId;
            var context = EncryptionContext.Parse("{\"db\":\"orders\"}");

            var rawKey = session.GenerateKey(factories.MechanismFactory.Create(CKM.CKM_AES_KEY_GEN),
            [
                factories.ObjectAttributeFactory.Create(CKA.CKA_CLASS, CKO.CKO_SECRET_KEY), factories.ObjectAttributeFactory.Create(CKA.CKA_KEY_TYPE, CKK.CKK_AES),
                factories.ObjectAttributeFactory.Create(CKA.CKA_VALUE_LEN, 32UL), factories.ObjectAttributeFactory.Create(CKA.CKA_ENCRYPT, true),
                // The same kind of object the KMS makes: a persistent, private, sensitive, non-extractable token key.
                factories.ObjectAttributeFactory.Create(CKA.CKA_TOKEN, true), factories.ObjectAttributeFactory.Create(CKA.CKA_PRIVATE, true),
                factories.ObjectAttributeFactory.Create(CKA.CKA_SENSITIVE, true), factories.ObjectAttributeFactory.Create(CKA.CKA_EXTRACTABLE, false),
            ]);
            var plaintext = new byte[32];
            var aad = new byte[30];
            var raw = Measure(seconds, () =>
            {
                var iv = new byte[12];
                Random.Shared.NextBytes(iv);
                var mechanism = factories.MechanismFactory.Create(CKM.CKM_AES_GCM, factories.MechanismParamsFactory.CreateCkGcmParams(iv, 96, aad, 128));
                session.Encrypt(mechanism, rawKey, plaintext);
            });
            var generate = Measure(seconds, () => kms.GenerateDataKey(me, keyId, 32, context).Dispose());

            Console.WriteLine($"hsm: SoftHSM2, one thread each, {seconds} s per measurement");
            Console.WriteLine("| operation | ops/s | share of raw C_Encrypt |");
            Console.WriteLine("|---|---:|---:|");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| raw C_Encrypt, CKM_AES_GCM, 32 B (ceiling) | {raw:N0} | 100% |"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| KMS GenerateDataKey on an HSM key | {generate:N0} | {generate / raw:P0} |"));
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            Directory.Delete(root, recursive: true);
        }

        return 0;
    }

    private static double Measure(int seconds, Action operation)
    {
        for (var i = 0; i < 200; i++)
        {
            operation();
        }

        long n = 0;
        var watch = Stopwatch.StartNew();
        while (watch.Elapsed.TotalSeconds < seconds)
        {
            operation();
            n++;
        }

        return n / watch.Elapsed.TotalSeconds;
    }

    [DllImport("libc", CharSet = CharSet.Ansi)]
    private static extern int setenv(string name, string value, int overwrite);
}
