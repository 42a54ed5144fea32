using System.Security.Cryptography;
using System.Text;
using Microsoft.Data.Sqlite;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.Tests.Infrastructure;
using C = TdeEngine.Kms.Errors.KmsErrors.Codes;

namespace TdeEngine.Kms.Tests.Byok;

/// <summary>
/// What happens to imported material, and to the import tokens that carry it, over a key's life:
/// deleted, expired, cancelled deletions, purges, and a second process that keeps running.
/// </summary>
public sealed class ImportedMaterialLifecycleTests : IDisposable
{
    private readonly KmsFixture _f = new();

    public void Dispose() => _f.Dispose();

    private string ExternalKey() => _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { Origin = "EXTERNAL" }).KeyId;

    private static byte[] Wrap(ImportParameters parameters, byte[] material)
    {
        using var rsa = RSA.Create();
        rsa.ImportSubjectPublicKeyInfo(parameters.PublicKey, out _);
        return rsa.Encrypt(material, RSAEncryptionPadding.OaepSHA256);
    }

    private ImportParameters Import(string keyId, byte[] material, long? expireUnix = null)
    {
        var parameters = _f.Kms.GetParametersForImport(_f.Me, keyId, "RSAES_OAEP_SHA_256", "RSA_2048");
        _f.Kms.ImportKeyMaterial(_f.Me, keyId, Wrap(parameters, material), parameters.ImportToken, expireUnix);
        return parameters;
    }

    private long ImportTokenRows()
    {
        using var connection = new SqliteConnection($"Data Source={Path.Combine(_f.Home, "kms.db")};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM ImportTokens";
        return (long)command.ExecuteScalar()!;
    }

    [Fact]
    public void Cancelling_the_deletion_of_a_key_whose_material_was_deleted_returns_it_to_PendingImport()
    {
        var keyId = ExternalKey();
        Import(keyId, RandomNumberGenerator.GetBytes(32));
        _f.Kms.DeleteKeyMaterial(_f.Me, keyId);
        _f.Kms.ScheduleKeyDeletion(_f.Me, keyId, 7);

        _f.Kms.CancelKeyDeletion(_f.Me, keyId);

        Assert.Equal(KeyStates.PendingImport, _f.Kms.DescribeKey(_f.Me, keyId).KeyState);
        KmsFixture.Fails(C.PendingImport, () => _f.Kms.Encrypt(_f.Me, keyId, "x"u8));
        KmsFixture.Fails(C.PendingImport, () => _f.Kms.GenerateDataKey(_f.Me, keyId, 32).Dispose());
    }

    [Fact]
    public void Cancelling_the_deletion_of_a_key_with_its_material_returns_it_to_Enabled()
    {
        var keyId = ExternalKey();
        Import(keyId, RandomNumberGenerator.GetBytes(32));
        _f.Kms.ScheduleKeyDeletion(_f.Me, keyId, 7);

        _f.Kms.CancelKeyDeletion(_f.Me, keyId);

        Assert.Equal(KeyStates.Enabled, _f.Kms.DescribeKey(_f.Me, keyId).KeyState);
        using var key = _f.Kms.GenerateDataKey(_f.Me, keyId, 32);
    }

    [Fact]
    public void Expired_material_is_deleted_by_housekeeping_and_the_key_cannot_be_enabled_or_disabled_meanwhile()
    {
        var keyId = ExternalKey();
        var material = RandomNumberGenerator.GetBytes(32);
        Import(keyId, material, _f.Time.GetUtcNow().AddHours(1).ToUnixTimeSeconds());
        var blob = _f.Kms.Encrypt(_f.Me, keyId, "kept"u8).CiphertextBlob;
        _f.Time.Advance(TimeSpan.FromHours(2));

        // Before housekeeping: the key reads PendingImport, and state changes treat it so.
        Assert.Equal(KeyStates.PendingImport, _f.Kms.DescribeKey(_f.Me, keyId).KeyState);
        KmsFixture.Fails(C.StateModifiedFailed, () => _f.Kms.DisableKey(_f.Me, keyId));
        KmsFixture.Fails(C.StateModifiedFailed, () => _f.Kms.EnableKey(_f.Me, keyId));

        var result = _f.Kms.RunHousekeeping();

        Assert.Equal([keyId], result.ExpiredMaterialKeys);
        var metadata = _f.Kms.DescribeKey(_f.Me, keyId);
        Assert.Equal(KeyStates.PendingImport, metadata.KeyState);
        Assert.Null(metadata.MaterialExpireTime);
        KmsFixture.Fails(C.PendingImport, () => _f.Kms.Decrypt(_f.Me, blob).Dispose());
        Assert.Empty(_f.Kms.RunHousekeeping().ExpiredMaterialKeys);

        // The same material brings the key, and its old ciphertexts, back.
        Import(keyId, material);
        using var plaintext = _f.Kms.Decrypt(_f.Me, blob);
        Assert.Equal("kept"u8.ToArray(), plaintext.Plaintext.Span.ToArray());
    }

    [Fact]
    public void Material_expiring_beyond_year_9999_or_before_1970_is_InvalidParameter()
    {
        var keyId = ExternalKey();
        var parameters = _f.Kms.GetParametersForImport(_f.Me, keyId, "RSAES_OAEP_SHA_256", "RSA_2048");
        var wrapped = Wrap(parameters, RandomNumberGenerator.GetBytes(32));

        foreach (var expiry in new[] { 99999999999999L, 253402300800L, -1L })
        {
            var error = KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.ImportKeyMaterial(_f.Me, keyId, wrapped, parameters.ImportToken, expiry));
            Assert.Contains("KeyMaterialExpireUnix", error.Message, StringComparison.Ordinal);
        }

        Assert.Equal(KeyStates.PendingImport, _f.Kms.DescribeKey(_f.Me, keyId).KeyState);
    }

    [Fact]
    public void Import_tokens_are_removed_after_24_hours_and_with_their_key()
    {
        var keyId = ExternalKey();
        var other = ExternalKey();
        var material = RandomNumberGenerator.GetBytes(32);
        var used = Import(keyId, material);
        var unused = _f.Kms.GetParametersForImport(_f.Me, other, "RSAES_OAEP_SHA_256", "RSA_2048");

        // Within 24 hours a token stays, and can import again (the same material after a delete).
        _f.Time.Advance(TimeSpan.FromHours(23));
        _f.Kms.RunHousekeeping();
        Assert.Equal(2, ImportTokenRows());
        _f.Kms.DeleteKeyMaterial(_f.Me, keyId);
        _f.Kms.ImportKeyMaterial(_f.Me, keyId, Wrap(used, material), used.ImportToken, null);

        // After 24 hours both are gone: the private key that unwraps the customer's material with them.
        _f.Time.Advance(TimeSpan.FromHours(2));
        _f.Kms.RunHousekeeping();
        Assert.Equal(0, ImportTokenRows());
        KmsFixture.Fails(C.InvalidImportToken, () =>
            _f.Kms.ImportKeyMaterial(_f.Me, other, Wrap(unused, material), unused.ImportToken, null));

        // A purged key takes its fresh tokens with it, without waiting for their 24 hours.
        _f.Kms.GetParametersForImport(_f.Me, other, "RSAES_OAEP_SHA_256", "RSA_2048");
        _f.Kms.ScheduleKeyDeletion(_f.Me, other, 7);
        _f.Time.Advance(TimeSpan.FromDays(7));
        Assert.Equal(1, ImportTokenRows());
        Assert.Equal([other], _f.Kms.RunHousekeeping().DeletedKeys);
        Assert.Equal(0, ImportTokenRows());
    }

    [Fact]
    public void A_key_purged_by_another_process_is_wiped_from_this_one()
    {
        using var server = _f.Open();
        var keyId = _f.NewKey();
        var kept = _f.NewKey();
        server.Encrypt(_f.Me, keyId, "x"u8);
        server.Encrypt(_f.Me, kept, "x"u8);
        Assert.Equal(2, server.OpenCipherCount);

        // The CLI (another KMS on the same store) deletes the key; the server only reads afterwards.
        _f.Kms.ScheduleKeyDeletion(_f.Me, keyId, 7);
        _f.Time.Advance(TimeSpan.FromDays(8));
        _f.Kms.RunHousekeeping();
        KmsFixture.Fails(C.KeyNotFound, () => server.DescribeKey(_f.Me, keyId));

        Assert.Equal(1, server.OpenCipherCount);
        server.Encrypt(_f.Me, kept, "still works"u8);
    }

    [Fact]
    public void Material_deleted_by_another_process_is_wiped_from_this_one()
    {
        using var server = _f.Open();
        var keyId = ExternalKey();
        Import(keyId, RandomNumberGenerator.GetBytes(32));
        var blob = server.Encrypt(_f.Me, keyId, "x"u8).CiphertextBlob;
        Assert.Equal(1, server.OpenCipherCount);

        _f.Kms.DeleteKeyMaterial(_f.Me, keyId);
        _f.Time.Advance(TimeSpan.FromMinutes(1));

        KmsFixture.Fails(C.PendingImport, () => server.Decrypt(_f.Me, blob).Dispose());
        Assert.Equal(0, server.OpenCipherCount);
    }

    [Fact]
    public void Rotation_policy_can_be_turned_on_only_for_Enabled_keys_and_off_for_any()
    {
        var disabled = _f.NewKey();
        _f.Kms.DisableKey(_f.Me, disabled);
        var pending = _f.NewKey();
        _f.Kms.ScheduleKeyDeletion(_f.Me, pending, 7);

        KmsFixture.Fails(C.StateModifiedFailed, () => _f.Kms.UpdateRotationPolicy(_f.Me, disabled, true, TimeSpan.FromDays(7)));
        KmsFixture.Fails(C.StateModifiedFailed, () => _f.Kms.UpdateRotationPolicy(_f.Me, pending, true, TimeSpan.FromDays(7)));
        _f.Kms.UpdateRotationPolicy(_f.Me, disabled, false, null);

        Assert.Equal("Disabled", _f.Kms.DescribeKey(_f.Me, disabled).AutomaticRotation);
        Assert.Equal(Encoding.ASCII.GetBytes("Disabled"), Encoding.ASCII.GetBytes(_f.Kms.DescribeKey(_f.Me, pending).AutomaticRotation));
    }
}
