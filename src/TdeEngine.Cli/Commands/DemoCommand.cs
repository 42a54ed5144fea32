using System.Security.Cryptography;
using System.Text;
using TdeEngine.Kms;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using Microsoft.Data.Sqlite;
using TdeEngine.Sqlite;
using TdeEngine.Storage;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Cli.Commands;

/// <summary>
/// <c>tde demo</c>: envelope encryption end to end on the embedded KMS, the way a cloud service
/// uses it, then an RDS-style encrypted SQLite database (Chinook) through the TDE VFS. No server
/// to start; state under <c>$TDE_HOME</c>.
/// </summary>
internal static class DemoCommand
{
    public static int Run(string[] args, TextWriter o)
    {
        _ = args;
        // The same composition as 'tde kms' and 'tde db': KMS, RAM and the audit trail behind the gateway.
        using var services = CliServices.Open();
        var kms = services.Kms;
        var options = kms.Options;
        var me = KmsCallContext.ForRoot(options.DefaultAccountId, userAgent: "tde-demo");
        // Key administration goes through the gateway as the account's root, so it is authorized and audited too.
        var admin = new DemoAdmin(services.Gateway, me);
        o.WriteLine($"TdeEngine demo: embedded KMS in {Path.GetFullPath(options.Home)} (region {options.RegionId}, account {options.DefaultAccountId})");
        o.WriteLine();

        // 1. A cloud product, as its service role, asks for a data key under its service key, created on first use.
        var rdsRole = ServiceRole(services, me, RdsRoleName, "rds-demo-instance", "rds-tde");
        var rds = new GatewayDataKeyProvider(services.Gateway, () => rdsRole with { RequestId = KmsCallContext.NewRequestId() });
        var dbContext = EncryptionContext.From([new("product", "rds"), new("db", "orders")]);
        Step(o, 1, "RDS, as its service role, asks for a data key under its service key alias/acs/rds (GenerateDataKey)");
        byte[] wrappedDek;
        byte[] sealedPage;
        var page = Encoding.UTF8.GetBytes("INSERT INTO orders VALUES (42, 'Ada Lovelace', 1815.12)");
        using (var dek = rds.GenerateDataKey("alias/acs/rds", dbContext))
        {
            var service = admin.Call("DescribeKey", ("KeyId", "alias/acs/rds")).GetProperty("KeyMetadata");
            o.WriteLine($"   service key {service.GetProperty("KeyId").GetString()}: creator {service.GetProperty("Creator").GetString()}, usage '{service.GetProperty("KeyUsage").GetString()}', state {service.GetProperty("KeyState").GetString()}");
            o.WriteLine($"   plaintext DEK: {dek.Plaintext.Length} bytes in wiped native memory; wrapped DEK: {dek.Wrapped.Length} bytes");
            wrappedDek = dek.Wrapped;

            // 2. The product seals its data with the plaintext DEK, in memory only.
            sealedPage = SealPage(dek.Plaintext.Span, page);
            o.WriteLine($"   sealed a {page.Length}-byte record with the DEK: {Convert.ToHexString(sealedPage.AsSpan(0, 16))}...");
        }

        o.WriteLine("   the plaintext DEK is now wiped; only the wrapped DEK is stored beside the data.");

        // 3. Later (a restart), the DEK is unwrapped through the KMS and the data opens.
        Step(o, 2, "After a restart: Decrypt the wrapped DEK and open the record");
        using (var dek = rds.Decrypt(wrappedDek, dbContext))
        {
            o.WriteLine($"   record: {Encoding.UTF8.GetString(OpenPage(dek.Span, sealedPage))}");
        }

        Step(o, 3, "The EncryptionContext is bound: the DEK of db=orders does not open as db=payroll");
        Expect(o, () => rds.Decrypt(wrappedDek, EncryptionContext.From([new("product", "rds"), new("db", "payroll")])).Dispose());

        // 4. A customer master key with an alias, rotation, and its lifecycle.
        Step(o, 4, "A customer master key (CreateKey, CreateAlias) protects a secret (Encrypt)");
        var cmk = admin.CreateKey("demo: orders database");
        var alias = "alias/demo-orders-" + cmk[..8];
        admin.Call("CreateAlias", ("AliasName", alias), ("KeyId", cmk));
        var secret = admin.Call("Encrypt", ("KeyId", alias), ("Plaintext", Convert.ToBase64String("s3cr3t-api-token"u8)), ("EncryptionContext", dbContext.ToString()));
        var secretBlob = secret.GetProperty("CiphertextBlob").GetString()!;
        o.WriteLine($"   key {cmk} as {alias}; ciphertext names version {secret.GetProperty("KeyVersionId").GetString()}");

        Step(o, 5, "Rotate (CreateKeyVersion): old ciphertexts still decrypt, new ones use the new version");
        var v2 = admin.Call("CreateKeyVersion", ("KeyId", alias)).GetProperty("KeyVersion").GetProperty("KeyVersionId").GetString();
        var old = admin.Call("Decrypt", ("CiphertextBlob", secretBlob), ("EncryptionContext", dbContext.ToString()));
        o.WriteLine($"   old ciphertext (version {old.GetProperty("KeyVersionId").GetString()}) -> '{Encoding.UTF8.GetString(old.GetProperty("Plaintext").GetBytesFromBase64())}'");
        var fresh = admin.Call("GenerateDataKeyWithoutPlaintext", ("KeyId", alias), ("EncryptionContext", dbContext.ToString()));
        o.WriteLine($"   new data key sealed under version {fresh.GetProperty("KeyVersionId").GetString()} (primary is {v2})");

        Step(o, 6, "Disable the key: every cryptographic call is refused until it is enabled again");
        admin.Call("DisableKey", ("KeyId", alias));
        Expect(o, () => admin.Call("Decrypt", ("CiphertextBlob", secretBlob), ("EncryptionContext", dbContext.ToString())));
        admin.Call("EnableKey", ("KeyId", alias));
        o.WriteLine("   EnableKey: decrypts again.");

        Step(o, 7, "Service keys are read-only for users");
        Expect(o, () => admin.Call("DisableKey", ("KeyId", "alias/acs/rds")));

        Step(o, 8, "A software KMS instance enforces its key quota and QPS spec");
        var instance = admin.Call("CreateKmsInstance", ("ProductType", "software"), ("KeyNum", "100"), ("Spec", "200")).GetProperty("KmsInstanceId").GetString()!;
        var instanceKey = admin.CreateKey("demo: instance key", instance);
        o.WriteLine($"   instance {instance} (KeyNum 100, Spec 200 QPS) holds key {instanceKey}");

        var chinook = FindChinook();
        RdsDatabase(o, services, admin, rdsRole, chinook);
        DemoEcsDisk.Run(o, services, admin, firstStep: 14, chinook);
        DemoOssBucket.Run(o, services, admin, firstStep: 17);

        Step(o, 20, "Every DEK request of the three services' roles is audited; the trail verifies");
        var trail = services.Audit.ReadAll();
        foreach (var role in new[] { RdsRoleName, DemoEcsDisk.RoleName, DemoOssBucket.RoleName })
        {
            var events = trail.Where(e => e.UserIdentity.UserName?.StartsWith(role + "/", StringComparison.Ordinal) == true).ToList();
            o.WriteLine($"   {role,-40} {events.Count,4} events, {events.Count(e => e.ErrorCode is not null),3} refused");
        }

        var byRoot = trail.Where(e => e.UserIdentity.Type == "root-account").ToList();
        o.WriteLine($"   {"the account's root (key administration)",-40} {byRoot.Count,4} events, {byRoot.Count(e => e.ErrorCode is not null),3} refused");
        o.WriteLine("   who disabled a key, and when (tde audit LookupEvents --EventName DisableKey):");
        foreach (var e in byRoot.Where(e => e.EventName == "DisableKey").TakeLast(5))
        {
            o.WriteLine($"     #{e.EventSequence} {e.EventTime:HH:mm:ss} {e.UserIdentity.Type} {e.UserIdentity.PrincipalId}  key {e.AdditionalEventData.GetValueOrDefault("keyId")}  {e.ErrorCode ?? "OK"}");
        }

        // Sign the end of the trail now (as 'tde audit checkpoint' does; a running writer signs every
        // few seconds and on close), so verification covers every event above, not only the chain.
        services.Audit.Checkpoint();
        o.WriteLine($"   signed a checkpoint of the trail's end (tde audit checkpoint). {services.Audit.Verify().Message}");

        Step(o, 21, "Schedule the demo CMK for deletion (7-day window; CancelKeyDeletion would keep it)");
        admin.Call("ScheduleKeyDeletion", ("KeyId", cmk), ("PendingWindowInDays", "7"));
        var deletion = admin.Call("DescribeKey", ("KeyId", cmk)).GetProperty("KeyMetadata");
        o.WriteLine($"   {cmk} is {deletion.GetProperty("KeyState").GetString()} until {deletion.GetProperty("DeleteDate").GetString()}");

        o.WriteLine();
        var demo = Path.Combine(kms.Options.Home, "demo");
        o.WriteLine("Try the CLI on the same state:");
        o.WriteLine($"   ./tde kms ListKeys                ./tde audit LookupEvents --EventName DisableKey      ./tde audit verify");
        o.WriteLine($"   ./tde db status {DemoDatabase(kms)}   ./tde db sql {DemoDatabase(kms)} \"SELECT count(*) FROM Track\"");
        o.WriteLine($"   ./tde disk inspect {Path.Combine(demo, "ecs", "d-data.img")}   ./tde oss ls {Path.Combine(demo, "oss", "demo-invoices")}");
        return 0;
    }

    private static string DemoDatabase(KeyManagementService kms) => Path.Combine(kms.Options.Home, "demo", "chinook.db");

    // The RDS-style scenario: a real SQLite database under TDE, used through Microsoft.Data.Sqlite.
    private static void RdsDatabase(TextWriter o, CliServices services, DemoAdmin admin, KmsCallContext role, string? script)
    {
        var kms = services.Kms;
        var path = DemoDatabase(kms);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        foreach (var old in Directory.GetFiles(Path.GetDirectoryName(path)!, "chinook*.db*"))   // the database, its backup, their journals
        {
            File.Delete(old);
        }

        // A dedicated key for the database, and no DEK caching, so that revocation shows at once.
        var keyId = admin.CreateKey("demo: Chinook database (RDS-style TDE)");
        // RDS uses the key as its service role: RAM authorizes every DEK request and the audit trail records it.
        TdeSqlite.Register(services.Gateway, () => role with { RequestId = KmsCallContext.NewRequestId() },
            new TdeStorageOptions { DekCacheTtl = TimeSpan.Zero });

        Step(o, 9, "RDS-style TDE: load the Chinook database through the TDE VFS (connection string: Vfs=tde)");
        using (var db = new SqliteConnection($"Data Source=file:{path}?vfs=tde&kms_key={keyId};Pooling=False"))
        {
            db.Open();
            using var load = db.CreateCommand();
            load.CommandText = script ?? "CREATE TABLE Artist(ArtistId INTEGER PRIMARY KEY, Name TEXT); INSERT INTO Artist(Name) VALUES ('AC/DC'), ('Aerosmith');";
            load.ExecuteNonQuery();
            using var query = db.CreateCommand();
            query.CommandText = "SELECT ar.Name, count(*) FROM Track t JOIN Album a USING (AlbumId) JOIN Artist ar USING (ArtistId) " +
                                "GROUP BY ar.ArtistId ORDER BY 2 DESC LIMIT 3";
            if (script is not null)
            {
                using var reader = query.ExecuteReader();
                while (reader.Read())
                {
                    o.WriteLine($"   {reader.GetString(0),-20} {reader.GetInt64(1),4} tracks");
                }
            }
        }

        var status = TdeDatabases.Status(path);
        o.WriteLine($"   {path}: {status.PageCount} pages of {status.PageSize} bytes, {PageCipherSuites.Name(status.Cipher)}, DEK wrapped by {status.KmsKeyArn}");

        Step(o, 10, "On disk it is ciphertext: no artist name in the file, and plain SQLite refuses it");
        o.WriteLine($"   plaintext artist names found in the file: {CountPlaintext(path)}");
        try
        {
            using var plain = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
            plain.Open();
            using var command = plain.CreateCommand();
            command.CommandText = "SELECT count(*) FROM sqlite_schema";
            command.ExecuteScalar();
            o.WriteLine("   plain SQLite opened it (unexpected)");
        }
        catch (SqliteException e)
        {
            o.WriteLine($"   plain SQLite: {e.Message}");
        }

        Step(o, 11, "Revoke the key (DisableKey): the database no longer opens; EnableKey and it does");
        admin.Call("DisableKey", ("KeyId", keyId));
        try
        {
            TdeSqlite.Explain(() =>
            {
                using var db = new SqliteConnection(TdeSqlite.ConnectionString(path));
                db.Open();
                return 0;
            });
            o.WriteLine("   opened (unexpected)");
        }
        catch (TdeStorageException e)
        {
            o.WriteLine($"   refused: {e.Code}: {e.Message}");
        }

        admin.Call("EnableKey", ("KeyId", keyId));
        using (var db = new SqliteConnection(TdeSqlite.ConnectionString(path)))
        {
            db.Open();
            using var count = db.CreateCommand();
            count.CommandText = "SELECT count(*) FROM sqlite_schema";
            o.WriteLine($"   EnableKey: opens again ({count.ExecuteScalar()} schema objects).");
        }

        Step(o, 12, "Every DEK request of the RDS role is in the tamper-evident audit trail (tde audit LookupEvents / verify)");
        var events = services.Audit.ReadAll().Where(e => e.UserIdentity.UserName == role.Principal.UserName).ToList();
        foreach (var e in events.TakeLast(4))
        {
            o.WriteLine($"   #{e.EventSequence} {e.EventName,-16} {e.UserIdentity.Type} {e.UserIdentity.UserName}  {e.ErrorCode ?? "OK",-18} key {e.AdditionalEventData.GetValueOrDefault("keyId")}");
        }

        o.WriteLine($"   {events.Count} events by the role. {services.Audit.Verify().Message}");

        Step(o, 13, "Rotate the DEK online (tde db rekey), then back up online (tde db backup), while a connection stays open");
        using (var open = new SqliteConnection(TdeSqlite.ConnectionString(path)))
        {
            open.Open();
            var before = File.ReadAllBytes(path);
            var rotated = TdeDatabases.Rekey(path, batchPages: 64);
            var after = File.ReadAllBytes(path);
            var changed = Enumerable.Range(0, (int)rotated.PageCount)
                .Count(p => !before.AsSpan(4096 + (p * rotated.PageSize), rotated.PageSize).SequenceEqual(after.AsSpan(4096 + (p * rotated.PageSize), rotated.PageSize)));
            o.WriteLine($"   {changed} of {rotated.PageCount} pages rewritten; the envelope now holds only DEK version {rotated.ActiveDekVersion}");
            using var count = open.CreateCommand();
            count.CommandText = "INSERT INTO Artist(Name) VALUES ('written after the rotation'); SELECT count(*) FROM Artist";
            o.WriteLine($"   the connection opened before it still reads and writes: {count.ExecuteScalar()} artists");

            // An online backup while the connection stays open: VACUUM INTO a TDE file with a DEK of its own, verified.
            var backupPath = Path.Combine(Path.GetDirectoryName(path)!, Path.GetFileNameWithoutExtension(path) + "-backup.db");
            var backup = TdeDatabases.Backup(path, backupPath);
            var copy = TdeDatabases.Status(backupPath);
            o.WriteLine($"   online backup (tde db backup): {copy.PageCount} pages, {(backup.Intact ? "verified" : "NOT verified")}, " +
                        $"its own DEK (database id {copy.DatabaseId[..8]}… against {rotated.DatabaseId[..8]}…), artist names in clear: {CountPlaintext(backupPath)}");
        }
    }

    private const string RdsRoleName = "AliyunRDSInstanceEncryptionDefaultRole";

    // A cloud product's service role in the account (created once), allowed to use keys for
    // cryptography only; the product calls the KMS as a session of it.
    internal static KmsCallContext ServiceRole(CliServices services, KmsCallContext me, string roleName, string sessionName, string userAgent)
    {
        try
        {
            services.Ram.CreateRole(me, roleName, description: "service role of the demo's cloud product");
            services.Ram.AttachPolicy(me, "Role", roleName, "System", "AliyunKMSCryptoUserAccess");
        }
        catch (KmsException e) when (e.Code.StartsWith("EntityAlreadyExists", StringComparison.Ordinal))
        {
            // Made by an earlier run.
        }

        return new KmsCallContext(services.Ram.RolePrincipal(me.AccountId, roleName, sessionName), "127.0.0.1", "", userAgent);
    }

    // How many of a few artist names from the demo data appear in plaintext in a file.
    internal static int CountPlaintext(string path)
    {
        var bytes = File.ReadAllBytes(path);
        return new[] { "AC/DC", "Aerosmith", "Led Zeppelin" }.Count(n => bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(n)) >= 0);
    }

    // The demo's own files from an earlier run are removed, so every run starts the same.
    internal static void ResetFolder(string folder)
    {
        if (Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }

        Directory.CreateDirectory(folder);
    }

    // Runs what the demo expects to be refused and prints the refusal's stable code.
    internal static void Refused(TextWriter o, string what, Action action)
    {
        try
        {
            action();
            throw new InvalidOperationException($"The demo expected this to be refused: {what}.");
        }
        catch (KmsException e)
        {
            o.WriteLine($"   {what}: refused, {e.Code}: {e.Message}");
        }
        catch (TdeStorageException e)
        {
            o.WriteLine($"   {what}: refused, {e.Code}: {e.Message}");
        }
    }

    private static string? FindChinook()
    {
        // The demo data ships in the repository (demo/data/chinook); look upward from the binary.
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "demo", "data", "chinook", "Chinook_Sqlite.sql");
            if (File.Exists(candidate))
            {
                return File.ReadAllText(candidate);
            }
        }

        return null;
    }

    internal static void Step(TextWriter o, int n, string title) => o.WriteLine($"[{n}] {title}");

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
