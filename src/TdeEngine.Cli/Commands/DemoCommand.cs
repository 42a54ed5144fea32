using System.Security.Cryptography;
using System.Text;
using TdeEngine.Kms;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;

namespace TdeEngine.Cli.Commands;

/// <summary>
/// <c>tde demo</c>: envelope encryption end to end on the embedded KMS, the way a cloud service
/// (here an RDS-style database) uses it. No server to start; state under <c>$TDE_HOME</c>.
/// </summary>
internal static class DemoCommand
{
    public static int Run(string[] args, TextWriter o)
    {
        _ = args;
        var options = new KmsOptions();
        using var kms = KeyManagementService.Open(options);
        var me = KmsCallContext.ForRoot(options.DefaultAccountId, userAgent: "tde-demo");
        o.WriteLine($"TdeEngine demo: embedded KMS in {Path.GetFullPath(options.Home)} (region {options.RegionId}, account {options.DefaultAccountId})");
        o.WriteLine();

        // 1. A cloud product asks for a data key under its service key, created on first use.
        var dbContext = EncryptionContext.From([new("product", "rds"), new("db", "orders")]);
        Step(o, 1, "RDS asks for a data key under its service key alias/acs/rds (GenerateDataKey)");
        byte[] wrappedDek;
        byte[] sealedPage;
        var page = Encoding.UTF8.GetBytes("INSERT INTO orders VALUES (42, 'Ada Lovelace', 1815.12)");
        using (var dek = kms.GenerateDataKey(me, "alias/acs/rds", 32, dbContext))
        {
            var service = kms.DescribeKey(me, "alias/acs/rds");
            o.WriteLine($"   service key {service.KeyId}: creator {service.Creator}, usage '{service.KeyUsage}', state {service.KeyState}");
            o.WriteLine($"   plaintext DEK: {dek.Plaintext.Length} bytes in wiped native memory; wrapped DEK: {dek.CiphertextBlob!.Length} bytes");
            wrappedDek = dek.CiphertextBlob;

            // 2. The product seals its data with the plaintext DEK, in memory only.
            sealedPage = SealPage(dek.Plaintext.Span, page);
            o.WriteLine($"   sealed a {page.Length}-byte record with the DEK: {Convert.ToHexString(sealedPage.AsSpan(0, 16))}...");
        }

        o.WriteLine("   the plaintext DEK is now wiped; only the wrapped DEK is stored beside the data.");

        // 3. Later (a restart), the DEK is unwrapped through the KMS and the data opens.
        Step(o, 2, "After a restart: Decrypt the wrapped DEK and open the record");
        using (var dek = kms.Decrypt(me, wrappedDek, dbContext))
        {
            o.WriteLine($"   record: {Encoding.UTF8.GetString(OpenPage(dek.Plaintext.Span, sealedPage))}");
        }

        Step(o, 3, "The EncryptionContext is bound: the DEK of db=orders does not open as db=payroll");
        Expect(o, () => kms.Decrypt(me, wrappedDek, EncryptionContext.From([new("product", "rds"), new("db", "payroll")])).Dispose());

        // 4. A customer master key with an alias, rotation, and its lifecycle.
        Step(o, 4, "A customer master key (CreateKey, CreateAlias) protects a secret (Encrypt)");
        var cmk = kms.CreateKey(me, new CreateKeyRequest { Description = "demo: orders database" });
        var alias = "alias/demo-orders-" + cmk.KeyId[..8];
        kms.CreateAlias(me, alias, cmk.KeyId);
        var secret = kms.Encrypt(me, alias, "s3cr3t-api-token"u8, dbContext);
        o.WriteLine($"   key {cmk.KeyId} as {alias}; ciphertext names version {secret.KeyVersionId}");

        Step(o, 5, "Rotate (CreateKeyVersion): old ciphertexts still decrypt, new ones use the new version");
        var v2 = kms.CreateKeyVersion(me, alias);
        using (var old = kms.Decrypt(me, secret.CiphertextBlob, dbContext))
        {
            o.WriteLine($"   old ciphertext (version {old.KeyVersionId}) -> '{Encoding.UTF8.GetString(old.Plaintext.Span)}'");
        }

        var fresh = kms.GenerateDataKeyWithoutPlaintext(me, alias, 32, dbContext);
        o.WriteLine($"   new data key sealed under version {fresh.KeyVersionId} (primary is {v2.KeyVersionId})");

        Step(o, 6, "Disable the key: every cryptographic call is refused until it is enabled again");
        kms.DisableKey(me, alias);
        Expect(o, () => kms.Decrypt(me, secret.CiphertextBlob, dbContext).Dispose());
        kms.EnableKey(me, alias);
        o.WriteLine("   EnableKey: decrypts again.");

        Step(o, 7, "Service keys are read-only for users");
        Expect(o, () => kms.DisableKey(me, "alias/acs/rds"));

        Step(o, 8, "A software KMS instance enforces its key quota and QPS spec");
        var instance = kms.CreateKmsInstance(me, "software", keyNum: 100, spec: 200);
        var instanceKey = kms.CreateKey(me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId, Description = "demo: instance key" });
        o.WriteLine($"   instance {instance.KmsInstanceId} (KeyNum {instance.KeyNum}, Spec {instance.Spec} QPS) holds key {instanceKey.KeyId}");

        Step(o, 9, "Schedule the demo CMK for deletion (7-day window; CancelKeyDeletion would keep it)");
        var when = kms.ScheduleKeyDeletion(me, cmk.KeyId, 7);
        o.WriteLine($"   {cmk.KeyId} is PendingDeletion until {when:yyyy-MM-dd HH:mm}Z");

        o.WriteLine();
        o.WriteLine("Try the CLI on the same state:  ./tde kms ListKeys   ./tde kms DescribeKey --KeyId alias/acs/rds   ./tde kms --help");
        return 0;
    }

    private static void Step(TextWriter o, int n, string title) => o.WriteLine($"[{n}] {title}");

    private static void Expect(TextWriter o, Action action)
    {
        try
        {
            action();
            throw new InvalidOperationException("The demo expected the KMS to refuse this call.");
        }
        catch (KmsException e)
        {
            o.WriteLine($"   refused: {e.Code} (HTTP {e.HttpStatus}): {e.Message}");
        }
    }

    // The demo's stand-in for a storage engine: nonce | ciphertext | tag under the DEK.
    private static byte[] SealPage(ReadOnlySpan<byte> dek, ReadOnlySpan<byte> page)
    {
        var output = new byte[12 + page.Length + 16];
        RandomNumberGenerator.Fill(output.AsSpan(0, 12));
        using var aes = new AesGcm(dek, 16);
        aes.Encrypt(output.AsSpan(0, 12), page, output.AsSpan(12, page.Length), output.AsSpan(12 + page.Length));
        return output;
    }

    private static byte[] OpenPage(ReadOnlySpan<byte> dek, byte[] sealedPage)
    {
        var plain = new byte[sealedPage.Length - 28];
        using var aes = new AesGcm(dek, 16);
        aes.Decrypt(sealedPage.AsSpan(0, 12), sealedPage.AsSpan(12, plain.Length), sealedPage.AsSpan(12 + plain.Length), plain);
        return plain;
    }
}
