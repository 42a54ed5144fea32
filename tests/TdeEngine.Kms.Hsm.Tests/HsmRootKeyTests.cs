using Net.Pkcs11Interop.Common;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.RootKeys;

namespace TdeEngine.Kms.Hsm.Tests;

[Collection("SoftHSM")]
public sealed class HsmRootKeyTests(SoftHsmFixture hsm)
{
    private string NewHome() => Path.Combine(hsm.Root, "root-" + Guid.NewGuid().ToString("N"));

    [Fact]
    public void Software_keys_wrapped_by_a_root_key_in_the_token_survive_a_restart_and_no_root_key_file_is_written()
    {
        var home = NewHome();
        var label = "tde-root-" + Guid.NewGuid().ToString("N");
        byte[] blob;
        string keyId;
        var first = HsmRootKeyProvider.OpenOrCreate(hsm.Backend, label);
        using (var kms = KeyManagementService.Open(new KmsOptions { Home = home }, first))
        {
            var me = KmsCallContext.ForRoot(kms.Options.DefaultAccountId);
            keyId = kms.CreateKey(me, new CreateKeyRequest { Description = "software key, HSM root" }).KeyId;
            blob = kms.Encrypt(me, keyId, "root in the token"u8).CiphertextBlob;
        }

        Assert.False(File.Exists(Path.Combine(home, "root.key")));
        Assert.StartsWith("hsm:", first.RootKeyId, StringComparison.Ordinal);
        var flags = hsm.Backend.ReadFlags(System.Text.Encoding.UTF8.GetBytes("pkcs11:" + label), CKA.CKA_EXTRACTABLE, CKA.CKA_SENSITIVE, CKA.CKA_TOKEN);
        Assert.False(flags[CKA.CKA_EXTRACTABLE]);
        Assert.True(flags[CKA.CKA_SENSITIVE]);
        Assert.True(flags[CKA.CKA_TOKEN]);

        var reopened = HsmRootKeyProvider.OpenOrCreate(hsm.Backend, label);
        Assert.Equal(first.RootKeyId, reopened.RootKeyId);
        using (var kms = KeyManagementService.Open(new KmsOptions { Home = home }, reopened))
        {
            using var opened = kms.Decrypt(KmsCallContext.ForRoot(kms.Options.DefaultAccountId), blob);
            Assert.Equal("root in the token"u8.ToArray(), opened.Plaintext.Span.ToArray());
        }
    }

    [Fact]
    public void A_different_root_key_cannot_open_the_store_and_the_error_names_both()
    {
        var home = NewHome();
        var root = HsmRootKeyProvider.OpenOrCreate(hsm.Backend, "tde-root-" + Guid.NewGuid().ToString("N"));
        var wrapped = root.Wrap("material"u8, "context"u8);

        var other = HsmRootKeyProvider.OpenOrCreate(hsm.Backend, "tde-root-" + Guid.NewGuid().ToString("N"));
        var e = Assert.Throws<System.Security.Cryptography.CryptographicException>(() => other.Unwrap(wrapped, "context"u8).Dispose());
        Assert.Contains(root.RootKeyId, e.Message, StringComparison.Ordinal);
        Assert.Contains(other.RootKeyId, e.Message, StringComparison.Ordinal);

        using var file = FileRootKeyProvider.OpenOrCreate(Path.Combine(home, "root.key"));
        Assert.Throws<System.Security.Cryptography.CryptographicException>(() => file.Unwrap(wrapped, "context"u8).Dispose());
        Assert.Contains("another root key provider", Assert.Throws<System.Security.Cryptography.CryptographicException>(
            () => root.Unwrap(file.Wrap("material"u8, "context"u8), "context"u8).Dispose()).Message, StringComparison.Ordinal);

        wrapped[^1] ^= 1;
        Assert.Contains("failed to authenticate", Assert.Throws<System.Security.Cryptography.CryptographicException>(
            () => root.Unwrap(wrapped, "context"u8).Dispose()).Message, StringComparison.Ordinal);
        wrapped[^1] ^= 1;
        Assert.Throws<System.Security.Cryptography.CryptographicException>(() => root.Unwrap(wrapped, "other context"u8).Dispose());
        using var ok = root.Unwrap(wrapped, "context"u8);
        Assert.Equal("material"u8.ToArray(), ok.Span.ToArray());
    }

    [Fact]
    public void The_tde_CLI_keeps_its_root_key_in_the_token_when_TDE_HSM_ROOT_KEY_is_set()
    {
        var home = NewHome();
        Directory.CreateDirectory(home);
        var created = Tde(home, hsmRoot: true, "kms", "CreateKey", "--Description", "cli key under an HSM root");
        Assert.True(created.ExitCode == 0, created.Stderr);
        var keyId = System.Text.Json.JsonDocument.Parse(created.Stdout).RootElement.GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
        var db = Path.Combine(home, "app.db");

        foreach (var args in new[] { new[] { "db", "create", db, "--key", keyId }, ["db", "sql", db, "CREATE TABLE t(a TEXT); INSERT INTO t VALUES ('sealed under an HSM root')"] })
        {
            var result = Tde(home, hsmRoot: true, args);
            Assert.True(result.ExitCode == 0, result.Stderr);
        }

        var read = Tde(home, hsmRoot: true, "db", "sql", db, "SELECT a FROM t");
        Assert.True(read.ExitCode == 0, read.Stderr);
        Assert.Contains("sealed under an HSM root", read.Stdout, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(home, "root.key")));

        // Without the HSM root the store's wrapped material cannot be opened, and the error says why.
        var withoutHsmRoot = Tde(home, hsmRoot: false, "db", "sql", db, "SELECT a FROM t");
        Assert.NotEqual(0, withoutHsmRoot.ExitCode);
        Assert.True(withoutHsmRoot.Stderr.Contains("wrapped by a root key in an HSM", StringComparison.Ordinal) && !withoutHsmRoot.Stderr.Contains("   at ", StringComparison.Ordinal), withoutHsmRoot.Stderr);
        Assert.DoesNotContain("sealed under an HSM root", withoutHsmRoot.Stdout, StringComparison.Ordinal);
    }

    private TdeEngine.Cli.Tests.CliProcess.Result Tde(string home, bool hsmRoot, params string[] args) =>
        TdeEngine.Cli.Tests.CliProcess.Run(home, new Dictionary<string, string>
        {
            ["SOFTHSM2_CONF"] = Path.Combine(hsm.Root, "softhsm2.conf"),
            ["TDE_HSM_MODULE"] = SoftHsmFixture.Module,
            ["TDE_HSM_TOKEN"] = SoftHsmFixture.Label,
            ["TDE_HSM_PIN"] = "1234",
            ["TDE_HSM_ROOT_KEY"] = hsmRoot ? "1" : "",
        }, args);
}
