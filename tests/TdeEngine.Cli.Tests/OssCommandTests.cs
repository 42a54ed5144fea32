using System.Text;
using System.Text.Json;

namespace TdeEngine.Cli.Tests;

public sealed class OssCommandTests : IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-cli-oss-" + Guid.NewGuid().ToString("N"));

    public OssCommandTests() => Directory.CreateDirectory(_home);

    public void Dispose() => Directory.Delete(_home, recursive: true);

    private string File(string name) => Path.Combine(_home, name);

    private string Bucket => File("bucket");

    private CliProcess.Result Ok(params string[] args)
    {
        var result = CliProcess.Run(_home, args);
        Assert.True(result.ExitCode == 0, $"tde {string.Join(' ', args)} exited {result.ExitCode}: {result.Stdout}{result.Stderr}");
        return result;
    }

    private JsonElement Key(string action, string keyId) =>
        JsonDocument.Parse(Ok("kms", action, "--KeyId", keyId).Stdout).RootElement.GetProperty("KeyMetadata").Clone();

    private JsonElement NewKey() =>
        JsonDocument.Parse(Ok("kms", "CreateKey", "--Description", "oss test").Stdout).RootElement.GetProperty("KeyMetadata").Clone();

    private string Invoice(string name)
    {
        System.IO.File.WriteAllText(File(name), string.Concat(Enumerable.Repeat("""{"customer":"Led Zeppelin Ltd","item":"Aerosmith poster"}""", 40)));
        return File(name);
    }

    private static string KeyIdOf(JsonElement key) => key.GetProperty("KeyId").GetString()!;

    [Fact]
    public void Objects_are_encrypted_under_the_bucket_default_and_a_disabled_key_stops_get_but_not_head()
    {
        var cmk = NewKey();
        var invoice = Invoice("invoice.json");
        Ok("oss", "mb", Bucket, "--bucket", "invoices");

        var first = Ok("oss", "put", Bucket, "readme.txt", invoice).Stdout;
        var ossArn = Key("DescribeKey", "alias/acs/oss").GetProperty("Arn").GetString()!;   // the service key exists once used
        Ok("oss", "encryption", Bucket, "KMS", "--key", KeyIdOf(cmk));
        var setting = Ok("oss", "encryption", Bucket).Stdout;
        var second = Ok("oss", "put", Bucket, "2026/inv-0042.json", invoice).Stdout;
        var head = JsonDocument.Parse(Ok("oss", "head", Bucket, "2026/inv-0042.json", "--json").Stdout).RootElement;
        var list = JsonDocument.Parse(Ok("oss", "ls", Bucket, "--json").Stdout).RootElement;
        Ok("oss", "get", Bucket, "2026/inv-0042.json", "--out", File("back.json"));
        var range = CliPipe.Run(_home, null, "oss", "get", Bucket, "2026/inv-0042.json", "--range", "0-9");

        Assert.Contains("x-oss-server-side-encryption:   AES256", first, StringComparison.Ordinal);
        Assert.Contains(ossArn, first, StringComparison.Ordinal);
        Assert.Contains("ETag:", first, StringComparison.Ordinal);
        Assert.Contains($"KMSMasterKeyID:  {KeyIdOf(cmk)}", setting, StringComparison.Ordinal);
        Assert.Contains("x-oss-server-side-encryption:   KMS", second, StringComparison.Ordinal);
        Assert.Equal(cmk.GetProperty("Arn").GetString(), head.GetProperty("KmsKeyId").GetString());
        Assert.Equal(new FileInfo(invoice).Length, head.GetProperty("Size").GetInt64());
        Assert.Equal(["2026/inv-0042.json", "readme.txt"], list.GetProperty("Objects").EnumerateArray().Select(o => o.GetProperty("Key").GetString()));
        Assert.Equal(System.IO.File.ReadAllBytes(invoice), System.IO.File.ReadAllBytes(File("back.json")));
        Assert.Equal(0, range.ExitCode);
        Assert.Equal(System.IO.File.ReadAllBytes(invoice)[..10], range.Stdout);
        foreach (var path in Directory.EnumerateFiles(Bucket))
        {
            Assert.DoesNotContain("Zeppelin", Encoding.UTF8.GetString(System.IO.File.ReadAllBytes(path)), StringComparison.Ordinal);
        }

        // Revoke the bucket's key: GET is refused, HEAD still answers from the header, the AES256 object is untouched.
        Ok("kms", "DisableKey", "--KeyId", KeyIdOf(cmk));
        var refused = CliProcess.Run(_home, "oss", "get", Bucket, "2026/inv-0042.json", "--out", File("never.json"));
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("Rejected.Disabled", refused.Stderr, StringComparison.Ordinal);
        Assert.False(System.IO.File.Exists(File("never.json")));
        Assert.Contains($"size:                           {new FileInfo(invoice).Length} bytes", Ok("oss", "head", Bucket, "2026/inv-0042.json").Stdout, StringComparison.Ordinal);
        Ok("oss", "get", Bucket, "readme.txt", "--out", File("readme.back"));

        Ok("kms", "EnableKey", "--KeyId", KeyIdOf(cmk));
        Ok("oss", "rm", Bucket, "2026/inv-0042.json");
        var gone = CliProcess.Run(_home, "oss", "head", Bucket, "2026/inv-0042.json");
        Assert.Equal(1, gone.ExitCode);
        Assert.Contains("NoSuchKey", gone.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Put_reads_stdin_and_get_writes_raw_bytes_to_stdout()
    {
        var bytes = new byte[70_000];   // more than one 64 KiB chunk
        new Random(5).NextBytes(bytes);
        bytes[0] = 0;
        bytes[1] = (byte)'\r';
        bytes[2] = (byte)'\n';
        Ok("oss", "mb", Bucket, "--bucket", "raw-bytes");

        var put = CliPipe.Run(_home, bytes, "oss", "put", Bucket, "blob.bin", "--sse", "KMS");
        var get = CliPipe.Run(_home, null, "oss", "get", Bucket, "blob.bin");
        var tail = CliPipe.Run(_home, null, "oss", "get", Bucket, "blob.bin", "--range", "69990-");

        Assert.True(put.ExitCode == 0, put.Stderr);
        Assert.Contains("x-oss-server-side-encryption:   KMS", Encoding.UTF8.GetString(put.Stdout), StringComparison.Ordinal);
        Assert.Equal(bytes, get.Stdout);
        Assert.Equal(bytes[69990..], tail.Stdout);
    }

    [Fact]
    public void Rewrap_to_another_key_lets_the_old_key_be_disabled()
    {
        var oldKey = NewKey();
        var newKey = NewKey();
        var invoice = Invoice("rewrap.json");
        Ok("oss", "mb", Bucket, "--bucket", "rewrap-test");
        Ok("oss", "put", Bucket, "a.json", invoice, "--sse", "KMS", "--key", KeyIdOf(oldKey));
        var etag = JsonDocument.Parse(Ok("oss", "head", Bucket, "a.json", "--json").Stdout).RootElement.GetProperty("ETag").GetString();

        var rewrapped = Ok("oss", "rewrap", Bucket, "a.json", "--key", KeyIdOf(newKey)).Stdout;
        Ok("kms", "DisableKey", "--KeyId", KeyIdOf(oldKey));
        Ok("oss", "get", Bucket, "a.json", "--out", File("a.back"));

        Assert.Contains(newKey.GetProperty("Arn").GetString()!, rewrapped, StringComparison.Ordinal);
        var head = JsonDocument.Parse(Ok("oss", "head", Bucket, "a.json", "--json").Stdout).RootElement;
        Assert.Equal(newKey.GetProperty("Arn").GetString(), head.GetProperty("KmsKeyId").GetString());
        Assert.Equal(etag, head.GetProperty("ETag").GetString());
        Assert.Equal(System.IO.File.ReadAllBytes(invoice), System.IO.File.ReadAllBytes(File("a.back")));
        Assert.Equal(["a.json"], Directory.EnumerateFiles(Bucket).Select(Path.GetFileName).Where(n => !n!.StartsWith('.')));
        var missing = CliProcess.Run(_home, "oss", "rewrap", Bucket, "b.json", "--key", KeyIdOf(newKey));
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("NoSuchKey", missing.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void The_DEK_requests_of_tde_oss_are_in_the_audit_trail()
    {
        Ok("oss", "mb", Bucket, "--bucket", "audited");
        Ok("oss", "put", Bucket, "x.json", Invoice("x.json"));
        Ok("oss", "get", Bucket, "x.json", "--out", File("x.back"));

        var events = JsonDocument.Parse(Ok("audit", "LookupEvents", "--json").Stdout).RootElement.GetProperty("Events").EnumerateArray()
            .Select(e => (Name: e.GetProperty("eventName").GetString(), Agent: e.GetProperty("userAgent").GetString())).ToList();
        var generated = JsonDocument.Parse(Ok("audit", "LookupEvents", "--EventName", "GenerateDataKey", "--json").Stdout).RootElement.GetProperty("Events");

        Assert.True(generated.GetArrayLength() >= 1);
        Assert.Contains(("GenerateDataKey", "tde-cli"), events);
        Assert.Contains(("Decrypt", "tde-cli"), events);
        Assert.Equal(0, CliProcess.Run(_home, "audit", "verify").ExitCode);
    }

    [Fact]
    public void Refusals_of_the_bucket_print_their_code_and_exit_1()
    {
        var noBucket = CliProcess.Run(_home, "oss", "ls", File("nothing-here"));
        var badName = CliProcess.Run(_home, "oss", "mb", Bucket, "--bucket", "Bad_Name");
        Ok("oss", "mb", Bucket, "--bucket", "refusals");
        var badAlgorithm = CliProcess.Run(_home, "oss", "encryption", Bucket, "DES");
        Ok("oss", "put", Bucket, "one.txt", Invoice("one.txt"));
        var pastEnd = CliProcess.Run(_home, "oss", "get", Bucket, "one.txt", "--range", "100000-100009");

        Assert.Equal((1, 1, 1), (noBucket.ExitCode, badName.ExitCode, badAlgorithm.ExitCode));
        Assert.Contains("NoSuchBucket", noBucket.Stderr, StringComparison.Ordinal);
        Assert.Contains("Tde.InvalidParameter", badName.Stderr, StringComparison.Ordinal);
        Assert.Contains("InvalidEncryptionAlgorithmError", badAlgorithm.Stderr, StringComparison.Ordinal);
        Assert.Equal(1, pastEnd.ExitCode);
        Assert.Contains("Tde.InvalidParameter", pastEnd.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Get_out_keeps_no_partial_file_when_a_chunk_fails_authentication_midway()
    {
        System.IO.File.WriteAllBytes(File("big.bin"), new byte[200_000]);   // four 64 KiB chunks
        Ok("oss", "mb", Bucket, "--bucket", "tampered");
        Ok("oss", "put", Bucket, "big.bin", File("big.bin"));
        var objectFile = Directory.EnumerateFiles(Bucket).Single(p => Path.GetFileName(p) == "big.bin");
        using (var stream = new FileStream(objectFile, FileMode.Open))
        {
            stream.Position = 100_000;   // inside the second chunk: Open authenticates only the last one
            var b = stream.ReadByte();
            stream.Position -= 1;
            stream.WriteByte((byte)(b ^ 0x01));
        }

        var result = CliProcess.Run(_home, "oss", "get", Bucket, "big.bin", "--out", File("partial.bin"));

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("Tde.ObjectAuthenticationFailed", result.Stderr, StringComparison.Ordinal);
        Assert.False(System.IO.File.Exists(File("partial.bin")));
    }

    [Fact]
    public void A_get_that_fails_midway_leaves_an_existing_out_file_as_it_was_and_out_inside_the_bucket_is_refused()
    {
        Ok("oss", "mb", Bucket, "--bucket", "outfile");
        Ok("oss", "put", Bucket, "a.txt", Invoice("a.txt"));
        System.IO.File.WriteAllText(File("precious.txt"), "precious data");

        // A get that fails midway (a tampered middle chunk) must leave an existing --out file alone.
        System.IO.File.WriteAllBytes(File("big.bin"), new byte[200_000]);
        Ok("oss", "put", Bucket, "big.bin", File("big.bin"));
        using (var stream = new FileStream(Path.Combine(Bucket, "big.bin"), FileMode.Open))
        {
            stream.Position = 100_000;
            var b = stream.ReadByte();
            stream.Position -= 1;
            stream.WriteByte((byte)(b ^ 0x01));
        }

        var tampered = CliProcess.Run(_home, "oss", "get", Bucket, "big.bin", "--out", File("precious.txt"));
        Assert.Equal(1, tampered.ExitCode);
        Assert.Contains("Tde.ObjectAuthenticationFailed", tampered.Stderr, StringComparison.Ordinal);

        var inside = CliProcess.Run(_home, "oss", "get", Bucket, "a.txt", "--out", Path.Combine(Bucket, "a.txt"));

        Assert.Equal("precious data", System.IO.File.ReadAllText(File("precious.txt")));
        Assert.Equal(2, inside.ExitCode);
        Assert.Contains("--out must be outside the bucket's folder", inside.Stderr, StringComparison.Ordinal);
        Ok("oss", "get", Bucket, "a.txt", "--out", File("a.back"));   // the object is still there and still sealed
        Assert.Equal(System.IO.File.ReadAllBytes(File("a.txt")), System.IO.File.ReadAllBytes(File("a.back")));
        Assert.Empty(Directory.EnumerateFiles(_home, ".*tde-out-*"));
    }

    [Theory]
    [InlineData("mb", "dir")]
    [InlineData("get", "dir")]
    [InlineData("get", "dir", "k", "--range", "9-1")]
    [InlineData("get", "dir", "k", "--range", "bytes")]
    [InlineData("rewrap", "dir", "k")]
    [InlineData("encryption", "dir", "--key", "k")]
    [InlineData("head", "dir", "k", "extra")]
    [InlineData("cp", "dir", "k")]
    public void A_command_line_it_cannot_use_exits_2_with_the_usage(params string[] args)
    {
        var result = CliProcess.Run(_home, ["oss", .. args]);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("tde oss mb DIR --bucket NAME", result.Stderr, StringComparison.Ordinal);
    }
}
