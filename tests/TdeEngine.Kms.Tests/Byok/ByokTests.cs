using System.Diagnostics;
using System.Security.Cryptography;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.Tests.Infrastructure;
using C = TdeEngine.Kms.Errors.KmsErrors.Codes;

namespace TdeEngine.Kms.Tests.Byok;

/// <summary>
/// Bring Your Own Key, the way a customer does it: material made and wrapped with openssl
/// (`openssl pkeyutl -encrypt -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256`), imported,
/// used, and then shown with Python's cryptography to be exactly the material that seals the blobs.
/// </summary>
public sealed class ByokTests : IDisposable
{
    private readonly KmsFixture _f = new();
    private readonly TempDirectory _work = new();

    public void Dispose()
    {
        _f.Dispose();
        _work.Dispose();
    }

    private string ExternalKey() => _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { Origin = "EXTERNAL" }).KeyId;

    // Wraps material with openssl, a real third-party tool, as the Alibaba docs tell customers to.
    private byte[] WrapWithOpenssl(ImportParameters parameters, byte[] material, string digest = "sha256")
    {
        var pem = Path.Combine(_work.Path, "public.pem");
        File.WriteAllText(pem, PemEncoding.WriteString("PUBLIC KEY", parameters.PublicKey));
        var materialFile = Path.Combine(_work.Path, "material.bin");
        var wrappedFile = Path.Combine(_work.Path, "wrapped.bin");
        File.WriteAllBytes(materialFile, material);
        var start = new ProcessStartInfo("openssl") { RedirectStandardError = true };
        foreach (var arg in new[] { "pkeyutl", "-encrypt", "-pubin", "-inkey", pem, "-in", materialFile, "-out", wrappedFile,
                     "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", $"rsa_oaep_md:{digest}", "-pkeyopt", $"rsa_mgf1_md:{digest}" })
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, "openssl pkeyutl failed: " + error);
        File.Delete(materialFile);
        return File.ReadAllBytes(wrappedFile);
    }

    [Theory]
    [InlineData("RSAES_OAEP_SHA_256", "sha256", "RSA_2048")]
    [InlineData("RSAES_OAEP_SHA_1", "sha1", "RSA_3072")]
    public void Material_wrapped_with_openssl_is_imported_and_seals_blobs_that_standard_tools_open(string algorithm, string digest, string spec)
    {
        var keyId = ExternalKey();
        var material = RandomNumberGenerator.GetBytes(32);
        var parameters = _f.Kms.GetParametersForImport(_f.Me, keyId, algorithm, spec);

        _f.Kms.ImportKeyMaterial(_f.Me, keyId, WrapWithOpenssl(parameters, material, digest), parameters.ImportToken, null);
        var blob = _f.Kms.Encrypt(_f.Me, keyId, "imported"u8).CiphertextBlob;

        Assert.Equal(KeyStates.Enabled, _f.Kms.DescribeKey(_f.Me, keyId).KeyState);
        Assert.Equal(parameters.TokenExpireTime, _f.Time.GetUtcNow().AddHours(24));
        Assert.Equal(material, _f.RawMaterial(keyId, _f.Kms.DescribeKey(_f.Me, keyId).PrimaryKeyVersion!));
        var opened = RunPython(Convert.ToBase64String(blob), Convert.ToHexStringLower(material));
        Assert.Equal(Convert.ToBase64String("imported"u8), opened);
    }

    [Fact]
    public void An_expired_or_foreign_token_is_refused()
    {
        var keyId = ExternalKey();
        var other = ExternalKey();
        var material = RandomNumberGenerator.GetBytes(32);
        var parameters = _f.Kms.GetParametersForImport(_f.Me, keyId, "RSAES_OAEP_SHA_256", "RSA_2048");
        var wrapped = WrapWithOpenssl(parameters, material);

        Assert.Equal(C.InvalidImportToken, Assert.Throws<KmsException>(() => _f.Kms.ImportKeyMaterial(_f.Me, other, wrapped, parameters.ImportToken, null)).Code);
        _f.Time.Advance(TimeSpan.FromHours(24));
        Assert.Equal(C.ExpiredImportToken, Assert.Throws<KmsException>(() => _f.Kms.ImportKeyMaterial(_f.Me, keyId, wrapped, parameters.ImportToken, null)).Code);
        Assert.Equal(KeyStates.PendingImport, _f.Kms.DescribeKey(_f.Me, keyId).KeyState);
    }

    [Fact]
    public void Only_the_same_material_can_be_imported_again_and_DeleteKeyMaterial_returns_the_key_to_PendingImport()
    {
        var keyId = ExternalKey();
        var material = RandomNumberGenerator.GetBytes(32);
        var first = _f.Kms.GetParametersForImport(_f.Me, keyId, "RSAES_OAEP_SHA_256", "RSA_2048");
        _f.Kms.ImportKeyMaterial(_f.Me, keyId, WrapWithOpenssl(first, material), first.ImportToken, null);
        var blob = _f.Kms.Encrypt(_f.Me, keyId, "before deletion"u8).CiphertextBlob;

        _f.Kms.DeleteKeyMaterial(_f.Me, keyId);
        Assert.Equal(KeyStates.PendingImport, _f.Kms.DescribeKey(_f.Me, keyId).KeyState);
        Assert.Equal(C.PendingImport, Assert.Throws<KmsException>(() => _f.Kms.Decrypt(_f.Me, blob).Dispose()).Code);

        var second = _f.Kms.GetParametersForImport(_f.Me, keyId, "RSAES_OAEP_SHA_256", "RSA_2048");
        var different = Assert.Throws<KmsException>(() =>
            _f.Kms.ImportKeyMaterial(_f.Me, keyId, WrapWithOpenssl(second, RandomNumberGenerator.GetBytes(32)), second.ImportToken, null));
        Assert.Equal(C.InvalidKeyMaterial, different.Code);

        _f.Kms.ImportKeyMaterial(_f.Me, keyId, WrapWithOpenssl(second, material), second.ImportToken, null);
        using var opened = _f.Kms.Decrypt(_f.Me, blob);
        Assert.Equal("before deletion"u8.ToArray(), opened.Plaintext.Span.ToArray());
    }

    [Fact]
    public void Material_expires_at_KeyMaterialExpireUnix_and_the_key_reads_as_PendingImport()
    {
        var keyId = ExternalKey();
        var parameters = _f.Kms.GetParametersForImport(_f.Me, keyId, "RSAES_OAEP_SHA_256", "RSA_2048");
        var expiry = _f.Time.GetUtcNow().AddHours(1).ToUnixTimeSeconds();

        _f.Kms.ImportKeyMaterial(_f.Me, keyId, WrapWithOpenssl(parameters, RandomNumberGenerator.GetBytes(32)), parameters.ImportToken, expiry);
        _f.Kms.Encrypt(_f.Me, keyId, "ok"u8);
        _f.Time.Advance(TimeSpan.FromHours(1));

        Assert.Equal(KeyStates.PendingImport, _f.Kms.DescribeKey(_f.Me, keyId).KeyState);
        Assert.Equal(C.PendingImport, Assert.Throws<KmsException>(() => _f.Kms.Encrypt(_f.Me, keyId, "late"u8)).Code);
    }

    [Fact]
    public void Bad_wrapping_parameters_and_material_are_refused_clearly()
    {
        var keyId = ExternalKey();
        var aliyunKey = _f.NewKey();

        Assert.Equal(C.InvalidParameter, Assert.Throws<KmsException>(() => _f.Kms.GetParametersForImport(_f.Me, keyId, "RSAES_PKCS1_V1_5", "RSA_2048")).Code);
        Assert.Equal(C.InvalidParameter, Assert.Throws<KmsException>(() => _f.Kms.GetParametersForImport(_f.Me, keyId, "RSAES_OAEP_SHA_256", "RSA_1024")).Code);
        Assert.Equal(C.UnsupportedOrigin, Assert.Throws<KmsException>(() => _f.Kms.GetParametersForImport(_f.Me, aliyunKey, "RSAES_OAEP_SHA_256", "RSA_2048")).Code);
        var parameters = _f.Kms.GetParametersForImport(_f.Me, keyId, "RSAES_OAEP_SHA_256", "RSA_2048");
        Assert.Equal(C.InvalidKeyMaterial, Assert.Throws<KmsException>(() =>
            _f.Kms.ImportKeyMaterial(_f.Me, keyId, WrapWithOpenssl(parameters, RandomNumberGenerator.GetBytes(16)), parameters.ImportToken, null)).Code);
        Assert.Equal(C.InvalidKeyMaterial, Assert.Throws<KmsException>(() =>
            _f.Kms.ImportKeyMaterial(_f.Me, keyId, RandomNumberGenerator.GetBytes(256), parameters.ImportToken, null)).Code);
    }

    private static string RunPython(string blob, string materialHex)
    {
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tools", "open_kms_blob.py"));
        start.ArgumentList.Add(blob);
        start.ArgumentList.Add(materialHex);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEnd();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, error);
        return output.Trim();
    }
}
