using System.Diagnostics;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Tests.Infrastructure;

namespace TdeEngine.Kms.Tests.Envelope;

/// <summary>
/// The no-lock-in promise: a blob made by the KMS opens in Python's `cryptography` (OpenSSL) with
/// only the raw key-version material and docs/examples/open_kms_blob.py.
/// </summary>
public sealed class StandardToolsInteropTests : IDisposable
{
    private const string Python = "/usr/bin/python3";
    private readonly KmsFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Theory]
    [InlineData("")]
    [InlineData("{\"db\":\"orders\",\"tenant\":\"t-1\",\"note\":\"naïve \\\"quoted\\\"\"}")]
    public void Python_cryptography_opens_a_KMS_blob_with_the_raw_material(string contextJson)
    {
        var keyId = _f.NewKey();
        var context = EncryptionContext.Parse(contextJson);
        using var dataKey = _f.Kms.GenerateDataKey(_f.Me, keyId, 32, context);
        var materialHex = Convert.ToHexStringLower(_f.RawMaterial(keyId, dataKey.KeyVersionId));

        var args = new List<string> { Convert.ToBase64String(dataKey.CiphertextBlob!), materialHex };
        if (contextJson.Length > 0)
        {
            args.Add(contextJson);
        }

        var output = RunScript(args);

        Assert.Equal(Convert.ToBase64String(dataKey.Plaintext.Span), output);
    }

    private static string RunScript(IReadOnlyList<string> args)
    {
        Assert.True(File.Exists(Python), $"{Python} is missing: install it with 'apt-get install -y python3 python3-cryptography' (test.sh does).");
        var start = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "tools", "open_kms_blob.py"));
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEnd();
        var stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0,
            $"open_kms_blob.py failed ({process.ExitCode}): {stderr}. If 'cryptography' is missing: apt-get install -y python3-cryptography.");
        return stdout.Trim();
    }
}
