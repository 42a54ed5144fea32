using System.Text;
using Dapper;
using Microsoft.Data.Sqlite;
using Net.Pkcs11Interop.Common;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Sqlite;

namespace TdeEngine.Kms.Hsm.Tests;

[Collection("SoftHSM")]
public sealed class HsmKeyTests(SoftHsmFixture hsm)
{
    private readonly KmsCallContext _me = KmsCallContext.ForRoot(hsm.Kms.Options.DefaultAccountId);

    private string NewHsmKey()
    {
        var instance = hsm.Kms.CreateKmsInstance(_me, "hardware", 100, 1000);
        var key = hsm.Kms.CreateKey(_me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId, Description = "hsm" });
        Assert.Equal("HSM", key.ProtectionLevel);
        return key.KeyId;
    }

    private byte[] StoredReference(string keyId, string versionId)
    {
        using var c = new SqliteConnection($"Data Source={Path.Combine(hsm.Root, "kms", "kms.db")};Mode=ReadOnly;Pooling=False");
        return c.QuerySingle<byte[]>("SELECT Material FROM KeyVersions WHERE KeyId = @keyId AND KeyVersionId = @versionId", new { keyId, versionId });
    }

    [Fact]
    public void Every_cryptographic_action_works_on_an_HSM_key_with_the_same_blob_format()
    {
        var keyId = NewHsmKey();
        var other = NewHsmKey();
        var context = EncryptionContext.Parse("{\"db\":\"orders\"}");

        using var dataKey = hsm.Kms.GenerateDataKey(_me, keyId, 32, context);
        using var opened = hsm.Kms.Decrypt(_me, dataKey.CiphertextBlob!, context);
        var encrypted = hsm.Kms.Encrypt(_me, keyId, "in the token"u8);
        var moved = hsm.Kms.ReEncrypt(_me, encrypted.CiphertextBlob, other);
        using var movedOpen = hsm.Kms.Decrypt(_me, moved.CiphertextBlob);

        Assert.Equal(dataKey.Plaintext.Span.ToArray(), opened.Plaintext.Span.ToArray());
        Assert.Equal("in the token"u8.ToArray(), movedOpen.Plaintext.Span.ToArray());
        Assert.Equal((byte)BlobAlgorithm.Aes256Gcm, dataKey.CiphertextBlob![5]);
        Assert.Equal("TKMS"u8.ToArray(), dataKey.CiphertextBlob[..4]);
        Assert.Equal(KmsErrors.Codes.InvalidCiphertext,
            Assert.Throws<KmsException>(() => hsm.Kms.Decrypt(_me, dataKey.CiphertextBlob!, EncryptionContext.Parse("{\"db\":\"hr\"}")).Dispose()).Code);
    }

    [Fact]
    public void Rotation_creates_a_new_version_in_the_token_and_old_blobs_still_open()
    {
        var keyId = NewHsmKey();
        var blob = hsm.Kms.Encrypt(_me, keyId, "v1"u8).CiphertextBlob;

        var v2 = hsm.Kms.CreateKeyVersion(_me, keyId);
        using var old = hsm.Kms.Decrypt(_me, blob);
        var fresh = hsm.Kms.Encrypt(_me, keyId, "v2"u8);

        Assert.Equal("v1"u8.ToArray(), old.Plaintext.Span.ToArray());
        Assert.Equal(v2.KeyVersionId, fresh.KeyVersionId);
    }

    [Fact]
    public void Key_versions_are_non_extractable_sensitive_token_objects_and_the_store_holds_only_their_label()
    {
        var keyId = NewHsmKey();
        var versionId = hsm.Kms.DescribeKey(_me, keyId).PrimaryKeyVersion!;
        var reference = StoredReference(keyId, versionId);

        var flags = hsm.Backend.ReadFlags(reference, CKA.CKA_EXTRACTABLE, CKA.CKA_SENSITIVE, CKA.CKA_TOKEN);

        Assert.False(flags[CKA.CKA_EXTRACTABLE]);
        Assert.True(flags[CKA.CKA_SENSITIVE]);
        Assert.True(flags[CKA.CKA_TOKEN]);
        Assert.Equal($"pkcs11:tde:{keyId}:{versionId}", Encoding.UTF8.GetString(reference));
    }

    [Fact]
    public void A_TDE_database_is_sealed_under_an_HSM_key_and_survives_its_rotation()
    {
        var keyId = NewHsmKey();
        TdeSqlite.Register(hsm.Kms);
        var path = Path.Combine(hsm.Root, "hsm.db");
        using (var db = new SqliteConnection($"Data Source=file:{path}?vfs=tde&kms_key={keyId};Pooling=False"))
        {
            db.Open();
            db.Execute("CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('sealed by a key in the HSM');");
        }

        hsm.Kms.CreateKeyVersion(_me, keyId);
        TdeSqlite.Register(hsm.Kms, new Storage.TdeStorageOptions { DekCacheTtl = TimeSpan.Zero });
        using (var db = new SqliteConnection(TdeSqlite.ConnectionString(path)))
        {
            db.Open();
            Assert.Equal("sealed by a key in the HSM", db.ExecuteScalar<string>("SELECT v FROM t"));
        }

        Assert.EndsWith(keyId, TdeDatabases.Status(path).KmsKeyArn, StringComparison.Ordinal);
        Assert.DoesNotContain("sealed by a key", Encoding.UTF8.GetString(File.ReadAllBytes(path)), StringComparison.Ordinal);
    }

    [Fact]
    public void A_disk_image_and_a_sealed_object_are_sealed_under_an_HSM_key_and_rewrap_after_its_rotation()
    {
        var keyId = NewHsmKey();
        var keys = new Storage.Keys.KmsDataKeyProvider(hsm.Kms);
        var image = Path.Combine(hsm.Root, "hsm-disk.img");
        var objectPath = Path.Combine(hsm.Root, "hsm-object.tdeo");
        var context = EncryptionContext.From([new("scenario", "hsm")]);
        using (var disk = Disks.EncryptedDisk.Create(image, 64 * 1024, keys, keyId, context))
        {
            disk.Write(100, "a disk sector under an HSM key"u8);
        }

        using (var file = File.Create(objectPath))
        {
            Objects.SealedObject.Seal(new MemoryStream("an object under an HSM key"u8.ToArray()), file, keys, keyId, context);
        }

        var v2 = hsm.Kms.CreateKeyVersion(_me, keyId);
        Disks.EncryptedDisk.Rewrap(image, keys, keyId);
        Objects.SealedObject.RewrapFile(objectPath, keys, keyId);

        using (var disk = Disks.EncryptedDisk.Open(image, keys))
        {
            var back = new byte[30];
            disk.Read(100, back);
            Assert.Equal("a disk sector under an HSM key", Encoding.UTF8.GetString(back));
        }

        using (var reader = new StreamReader(Objects.SealedObject.Open(File.OpenRead(objectPath), keys, context)))
        {
            Assert.Equal("an object under an HSM key", reader.ReadToEnd());
        }

        // Re-wrapped under the key's primary version (v2, generated in the token), and still named by the key.
        Assert.EndsWith(keyId, Disks.EncryptedDisk.Inspect(image).KmsKeyArn, StringComparison.Ordinal);
        Assert.Equal(v2.KeyVersionId, hsm.Kms.DescribeKey(_me, keyId).PrimaryKeyVersion);
        Assert.DoesNotContain("under an HSM key", Encoding.UTF8.GetString(File.ReadAllBytes(image)), StringComparison.Ordinal);
        Assert.DoesNotContain("under an HSM key", Encoding.UTF8.GetString(File.ReadAllBytes(objectPath)), StringComparison.Ordinal);
    }

    [Fact]
    public void OAEP_with_SHA_256_is_refused_clearly_by_a_token_that_only_does_SHA_1()
    {
        var instance = hsm.Kms.CreateKmsInstance(_me, "hardware", 100, 1000);
        var keyId = hsm.Kms.CreateKey(_me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId, Origin = "EXTERNAL" }).KeyId;
        var parameters = hsm.Kms.GetParametersForImport(_me, keyId, "RSAES_OAEP_SHA_256", "RSA_2048");

        var e = Assert.Throws<KmsException>(() => hsm.Kms.ImportKeyMaterial(_me, keyId,
            Wrap(parameters.PublicKey, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32), "sha256"), parameters.ImportToken, null));

        Assert.Equal("UnsupportedOperation", e.Code);
        Assert.Contains("RSAES_OAEP_SHA_1", e.Message, StringComparison.Ordinal);
        Assert.Equal(KeyStates.PendingImport, hsm.Kms.DescribeKey(_me, keyId).KeyState);
    }

    [Theory]
    [InlineData("RSAES_OAEP_SHA_1", "sha1")]
    public void Material_wrapped_with_openssl_is_unwrapped_inside_the_HSM_and_seals_blobs_standard_tools_open(string algorithm, string digest)
    {
        var instance = hsm.Kms.CreateKmsInstance(_me, "hardware", 100, 1000);
        var keyId = hsm.Kms.CreateKey(_me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId, Origin = "EXTERNAL" }).KeyId;
        var material = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        var parameters = hsm.Kms.GetParametersForImport(_me, keyId, algorithm, "RSA_2048");

        hsm.Kms.ImportKeyMaterial(_me, keyId, Wrap(parameters.PublicKey, material, digest), parameters.ImportToken, null);
        var blob = hsm.Kms.Encrypt(_me, keyId, "byok in the token"u8).CiphertextBlob;

        Assert.Equal(KeyStates.Enabled, hsm.Kms.DescribeKey(_me, keyId).KeyState);
        var versionId = hsm.Kms.DescribeKey(_me, keyId).PrimaryKeyVersion!;
        var flags = hsm.Backend.ReadFlags(StoredReference(keyId, versionId), CKA.CKA_EXTRACTABLE, CKA.CKA_SENSITIVE, CKA.CKA_TOKEN);
        Assert.False(flags[CKA.CKA_EXTRACTABLE]);
        Assert.True(flags[CKA.CKA_SENSITIVE]);
        Assert.True(flags[CKA.CKA_TOKEN]);
        Assert.Equal(Convert.ToBase64String("byok in the token"u8), OpenWithPython(blob, material));

        hsm.Kms.DeleteKeyMaterial(_me, keyId);
        Assert.Equal(KeyStates.PendingImport, hsm.Kms.DescribeKey(_me, keyId).KeyState);
        var again = hsm.Kms.GetParametersForImport(_me, keyId, algorithm, "RSA_2048");
        Assert.Equal("InvalidKeyMaterial", Assert.Throws<KmsException>(() =>
            hsm.Kms.ImportKeyMaterial(_me, keyId, Wrap(again.PublicKey, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32), digest), again.ImportToken, null)).Code);
        var third = hsm.Kms.GetParametersForImport(_me, keyId, algorithm, "RSA_2048");
        hsm.Kms.ImportKeyMaterial(_me, keyId, Wrap(third.PublicKey, material, digest), third.ImportToken, null);
        using var opened = hsm.Kms.Decrypt(_me, blob);
        Assert.Equal("byok in the token"u8.ToArray(), opened.Plaintext.Span.ToArray());
    }

    [Theory]
    [InlineData(16)]
    [InlineData(24)]
    public void Material_that_is_not_32_bytes_is_refused_by_the_HSM_import(int length)
    {
        var instance = hsm.Kms.CreateKmsInstance(_me, "hardware", 100, 1000);
        var keyId = hsm.Kms.CreateKey(_me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId, Origin = "EXTERNAL" }).KeyId;
        var parameters = hsm.Kms.GetParametersForImport(_me, keyId, "RSAES_OAEP_SHA_1", "RSA_2048");

        var e = Assert.Throws<KmsException>(() => hsm.Kms.ImportKeyMaterial(_me, keyId,
            Wrap(parameters.PublicKey, System.Security.Cryptography.RandomNumberGenerator.GetBytes(length), "sha1"), parameters.ImportToken, null));

        Assert.Equal("InvalidKeyMaterial", e.Code);
        Assert.Contains($"not {length}", e.Message, StringComparison.Ordinal);
        Assert.Equal(KeyStates.PendingImport, hsm.Kms.DescribeKey(_me, keyId).KeyState);
    }

    [Fact]
    public void An_expired_import_token_is_refused_for_an_HSM_key()
    {
        var instance = hsm.Kms.CreateKmsInstance(_me, "hardware", 100, 1000);
        var keyId = hsm.Kms.CreateKey(_me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId, Origin = "EXTERNAL" }).KeyId;
        var parameters = hsm.Kms.GetParametersForImport(_me, keyId, "RSAES_OAEP_SHA_1", "RSA_2048");
        var wrapped = Wrap(parameters.PublicKey, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32), "sha1");

        hsm.Time.Advance(TimeSpan.FromHours(24));

        Assert.Equal("ExpiredImportToken", Assert.Throws<KmsException>(() => hsm.Kms.ImportKeyMaterial(_me, keyId, wrapped, parameters.ImportToken, null)).Code);
        Assert.Equal(KeyStates.PendingImport, hsm.Kms.DescribeKey(_me, keyId).KeyState);
    }

    [Fact]
    public void An_expired_import_token_s_wrapping_pair_is_destroyed_in_the_token()
    {
        var instance = hsm.Kms.CreateKmsInstance(_me, "hardware", 100, 1000);
        var keyId = hsm.Kms.CreateKey(_me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId, Origin = "EXTERNAL" }).KeyId;
        var parameters = hsm.Kms.GetParametersForImport(_me, keyId, "RSAES_OAEP_SHA_1", "RSA_2048");
        byte[] reference;
        using (var c = new SqliteConnection($"Data Source={Path.Combine(hsm.Root, "kms", "kms.db")};Mode=ReadOnly;Pooling=False"))
        {
            reference = c.QuerySingle<byte[]>("SELECT WrappedPrivateKey FROM ImportTokens WHERE Token = @token", new { token = parameters.ImportToken });
        }

        var probe = new Protection.KeyVersionRef(keyId, "probe", instance.KmsInstanceId);
        var garbage = new byte[256];
        // While the token lives, its private key is in the token: an unwrap of garbage fails in C_UnwrapKey.
        var before = Assert.Throws<HsmException>(() => hsm.Backend.UnwrapMaterial(probe, reference, garbage, System.Security.Cryptography.RSAEncryptionPadding.OaepSHA1));
        Assert.Equal("C_UnwrapKey", before.Function);

        hsm.Time.Advance(TimeSpan.FromHours(25));
        hsm.Kms.RunHousekeeping();

        var after = Assert.Throws<HsmException>(() => hsm.Backend.UnwrapMaterial(probe, reference, garbage, System.Security.Cryptography.RSAEncryptionPadding.OaepSHA1));
        Assert.Equal("C_FindObjects", after.Function);
        Assert.Contains("not in the token", after.Message, StringComparison.Ordinal);
        Assert.Equal("InvalidImportToken", Assert.Throws<KmsException>(() => hsm.Kms.ImportKeyMaterial(_me, keyId, garbage, parameters.ImportToken, null)).Code);
    }

    [Fact]
    public void HSM_key_material_expires_at_KeyMaterialExpireUnix_and_the_key_reads_as_PendingImport()
    {
        var instance = hsm.Kms.CreateKmsInstance(_me, "hardware", 100, 1000);
        var keyId = hsm.Kms.CreateKey(_me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId, Origin = "EXTERNAL" }).KeyId;
        var parameters = hsm.Kms.GetParametersForImport(_me, keyId, "RSAES_OAEP_SHA_1", "RSA_2048");
        var expiry = hsm.Time.GetUtcNow().AddHours(1).ToUnixTimeSeconds();

        hsm.Kms.ImportKeyMaterial(_me, keyId, Wrap(parameters.PublicKey, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32), "sha1"), parameters.ImportToken, expiry);
        var blob = hsm.Kms.Encrypt(_me, keyId, "in time"u8).CiphertextBlob;
        hsm.Time.Advance(TimeSpan.FromHours(1));

        Assert.Equal(KeyStates.PendingImport, hsm.Kms.DescribeKey(_me, keyId).KeyState);
        Assert.Equal("Rejected.PendingImport", Assert.Throws<KmsException>(() => hsm.Kms.Decrypt(_me, blob).Dispose()).Code);
    }

    private byte[] Wrap(byte[] publicKey, byte[] material, string digest)
    {
        var dir = Path.Combine(hsm.Root, "byok-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "pub.pem"), System.Security.Cryptography.PemEncoding.WriteString("PUBLIC KEY", publicKey));
        File.WriteAllBytes(Path.Combine(dir, "m.bin"), material);
        var start = new System.Diagnostics.ProcessStartInfo("openssl") { RedirectStandardError = true };
        foreach (var arg in new[] { "pkeyutl", "-encrypt", "-pubin", "-inkey", Path.Combine(dir, "pub.pem"), "-in", Path.Combine(dir, "m.bin"),
                     "-out", Path.Combine(dir, "w.bin"), "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", $"rsa_oaep_md:{digest}", "-pkeyopt", $"rsa_mgf1_md:{digest}" })
        {
            start.ArgumentList.Add(arg);
        }

        using var process = System.Diagnostics.Process.Start(start)!;
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, error);
        return File.ReadAllBytes(Path.Combine(dir, "w.bin"));
    }

    private static string OpenWithPython(byte[] blob, byte[] material)
    {
        var script = Path.Combine(AppContext.BaseDirectory, "tools", "open_kms_blob.py");
        var start = new System.Diagnostics.ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { script, Convert.ToBase64String(blob), Convert.ToHexStringLower(material) })
        {
            start.ArgumentList.Add(arg);
        }

        using var process = System.Diagnostics.Process.Start(start)!;
        var output = process.StandardOutput.ReadToEnd();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, error);
        return output.Trim();
    }

    [Fact]
    public void A_missing_token_names_the_function_and_what_to_do()
    {
        var e = Assert.Throws<HsmException>(() => new Pkcs11KeyProtectionBackend(new HsmOptions { ModulePath = SoftHsmFixture.Module, TokenLabel = "no-such-token" }));

        Assert.Equal(("C_GetSlotList", "CKR_TOKEN_NOT_PRESENT"), (e.Function, e.ReturnValue));
        Assert.Contains("not present", e.Message, StringComparison.Ordinal);
    }
}
