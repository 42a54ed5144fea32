using System.Text;
using System.Text.Json;

namespace TdeEngine.Cli.Tests;

public sealed class DiskCommandTests : IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-cli-disk-" + Guid.NewGuid().ToString("N"));

    public DiskCommandTests() => Directory.CreateDirectory(_home);

    public void Dispose() => Directory.Delete(_home, recursive: true);

    private string File(string name) => Path.Combine(_home, name);

    private CliProcess.Result Ok(params string[] args)
    {
        var result = CliProcess.Run(_home, args);
        Assert.True(result.ExitCode == 0, $"tde {string.Join(' ', args)} exited {result.ExitCode}: {result.Stdout}{result.Stderr}");
        return result;
    }

    private JsonElement Key(string action, string keyId) =>
        JsonDocument.Parse(Ok("kms", action, "--KeyId", keyId).Stdout).RootElement.GetProperty("KeyMetadata").Clone();

    private JsonElement NewKey() =>
        JsonDocument.Parse(Ok("kms", "CreateKey", "--Description", "disk test").Stdout).RootElement.GetProperty("KeyMetadata").Clone();

    // Recognisable text across several 512-byte sectors, so a scan of the image means something.
    private string Payload(string name)
    {
        var bytes = Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("Aerosmith tour 2026, row of the guest file system. ", 60)));
        System.IO.File.WriteAllBytes(File(name), bytes);
        return File(name);
    }

    private static bool Contains(string path, string text) =>
        System.IO.File.ReadAllBytes(path).AsSpan().IndexOf(Encoding.UTF8.GetBytes(text)) >= 0;

    [Fact]
    public void Create_write_and_read_round_trip_and_the_image_holds_no_plaintext()
    {
        var payload = Payload("file.txt");

        var created = Ok("disk", "create", File("d.img"), "--size", "1M", "--sector-size", "512").Stdout;
        var ecs = Key("DescribeKey", "alias/acs/ecs");   // the service key exists once used
        Ok("disk", "write", File("d.img"), "--offset", "5000", "--from", payload);
        Ok("disk", "read", File("d.img"), "--offset", "5000", "--length", new FileInfo(payload).Length.ToString(System.Globalization.CultureInfo.InvariantCulture), "--out", File("back.txt"));

        Assert.Contains(ecs.GetProperty("Arn").GetString()!, created, StringComparison.Ordinal);
        Assert.Contains("size:            1048576 bytes", created, StringComparison.Ordinal);
        Assert.Contains("sector size:     512 bytes", created, StringComparison.Ordinal);
        Assert.Contains("XTS-AES-256", created, StringComparison.Ordinal);
        Assert.Equal(System.IO.File.ReadAllBytes(payload), System.IO.File.ReadAllBytes(File("back.txt")));
        Assert.False(Contains(File("d.img"), "Aerosmith"), "the disk image holds the plaintext");
        var inspect = JsonDocument.Parse(Ok("disk", "inspect", File("d.img"), "--json").Stdout).RootElement;
        Assert.Equal("d.img", inspect.GetProperty("EncryptionContext").GetProperty("acs:ecs:disk").GetString());
    }

    [Fact]
    public void Write_reads_stdin_and_read_writes_raw_bytes_to_stdout()
    {
        var bytes = new byte[9000];
        new Random(3).NextBytes(bytes);
        bytes[0] = 0;
        bytes[1] = (byte)'\r';
        bytes[2] = (byte)'\n';
        Ok("disk", "create", File("s.img"), "--size", "64K");

        var write = CliPipe.Run(_home, bytes, "disk", "write", File("s.img"), "--offset", "100");
        var read = CliPipe.Run(_home, null, "disk", "read", File("s.img"), "--offset", "100", "--length", "9000");
        var tooLong = CliPipe.Run(_home, null, "disk", "read", File("s.img"), "--offset", "60000", "--length", "9000");

        Assert.True(write.ExitCode == 0, write.Stderr);
        Assert.Equal(0, read.ExitCode);
        Assert.Equal(bytes, read.Stdout);
        Assert.Equal(1, tooLong.ExitCode);
        Assert.Empty(tooLong.Stdout);
        Assert.Contains("Tde.InvalidParameter", tooLong.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Inspect_works_while_the_key_is_disabled_but_read_is_refused()
    {
        var key = NewKey();
        var keyId = key.GetProperty("KeyId").GetString()!;
        Ok("disk", "create", File("k.img"), "--size", "256K", "--key", keyId, "--context", """{"acs:ecs:instanceId":"i-test"}""");
        Ok("kms", "DisableKey", "--KeyId", keyId);

        var inspect = CliProcess.Run(_home, "disk", "inspect", File("k.img"));
        var read = CliProcess.Run(_home, "disk", "read", File("k.img"), "--offset", "0", "--length", "16", "--out", File("never.bin"));

        Assert.Equal(0, inspect.ExitCode);
        Assert.Contains(key.GetProperty("Arn").GetString()!, inspect.Stdout, StringComparison.Ordinal);
        Assert.Contains("""{"acs:ecs:instanceId":"i-test"}""", inspect.Stdout, StringComparison.Ordinal);
        Assert.Equal(1, read.ExitCode);
        Assert.Contains("Rejected.Disabled", read.Stderr, StringComparison.Ordinal);
        Assert.False(System.IO.File.Exists(File("never.bin")));
        Ok("kms", "EnableKey", "--KeyId", keyId);
        Ok("disk", "read", File("k.img"), "--offset", "0", "--length", "16");
    }

    [Fact]
    public void A_preallocated_disk_says_so_and_holds_no_all_zero_sector()
    {
        var created = Ok("disk", "create", File("pre.img"), "--size", "64K", "--preallocate").Stdout;
        var inspect = JsonDocument.Parse(Ok("disk", "inspect", File("pre.img"), "--json").Stdout).RootElement;

        Assert.Contains("preallocated", created, StringComparison.Ordinal);
        Assert.True(inspect.GetProperty("Preallocated").GetBoolean());
        var raw = System.IO.File.ReadAllBytes(File("pre.img"));
        for (var at = 8192; at < raw.Length; at += 4096)
        {
            Assert.True(raw.AsSpan(at, 4096).ContainsAnyExcept((byte)0), $"the sector at {at} is all zeros");
        }
    }

    [Fact]
    public void A_snapshot_reads_back_what_the_disk_held()
    {
        var payload = Payload("snap.txt");
        Ok("disk", "create", File("a.img"), "--size", "1M");
        Ok("disk", "write", File("a.img"), "--offset", "8192", "--from", payload);

        Ok("disk", "snapshot", File("a.img"), File("a-snap.img"));
        System.IO.File.WriteAllText(File("later.txt"), new string('Z', 3000));
        Ok("disk", "write", File("a.img"), "--offset", "8192", "--from", File("later.txt"));   // the disk moves on; the snapshot does not
        Ok("disk", "read", File("a-snap.img"), "--offset", "8192", "--length", new FileInfo(payload).Length.ToString(System.Globalization.CultureInfo.InvariantCulture), "--out", File("from-snap.txt"));

        Assert.Equal(System.IO.File.ReadAllBytes(payload), System.IO.File.ReadAllBytes(File("from-snap.txt")));
        Assert.False(Contains(File("a-snap.img"), "Aerosmith"), "the snapshot holds the plaintext");
        var again = CliProcess.Run(_home, "disk", "snapshot", File("a.img"), File("a-snap.img"));
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("Tde.InvalidParameter", again.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void A_copy_under_a_new_DEK_reads_back_and_no_longer_needs_the_old_key()
    {
        var payload = Payload("copy.txt");
        Ok("disk", "create", File("src.img"), "--size", "1M");
        Ok("disk", "write", File("src.img"), "--offset", "4096", "--from", payload);
        var target = JsonDocument.Parse(Ok("kms", "CreateKey", "--Description", "disk copy").Stdout).RootElement.GetProperty("KeyMetadata");

        var copied = Ok("disk", "copy", File("src.img"), File("dst.img"), "--key", target.GetProperty("KeyId").GetString()!).Stdout;
        Ok("disk", "read", File("dst.img"), "--offset", "4096", "--length", new FileInfo(payload).Length.ToString(System.Globalization.CultureInfo.InvariantCulture), "--out", File("from-copy.txt"));

        Assert.Contains("under a new DEK", copied, StringComparison.Ordinal);
        Assert.Contains(target.GetProperty("Arn").GetString()!, copied, StringComparison.Ordinal);
        Assert.Equal(System.IO.File.ReadAllBytes(payload), System.IO.File.ReadAllBytes(File("from-copy.txt")));
        Assert.False(Contains(File("dst.img"), "Aerosmith"), "the copy holds the plaintext");
        var again = CliProcess.Run(_home, "disk", "copy", File("src.img"), File("dst.img"));
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("Tde.InvalidParameter", again.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Rewrap_to_another_key_lets_the_old_key_be_disabled()
    {
        var oldKey = NewKey();
        var newKey = NewKey();
        var payload = Payload("rewrap.txt");
        Ok("disk", "create", File("r.img"), "--size", "1M", "--key", oldKey.GetProperty("KeyId").GetString()!);
        Ok("disk", "write", File("r.img"), "--offset", "0", "--from", payload);
        var sectorsBefore = System.IO.File.ReadAllBytes(File("r.img"))[8192..];

        var rewrapped = Ok("disk", "rewrap", File("r.img"), "--key", newKey.GetProperty("KeyId").GetString()!).Stdout;
        Ok("kms", "DisableKey", "--KeyId", oldKey.GetProperty("KeyId").GetString()!);
        Ok("kms", "CreateKeyVersion", "--KeyId", newKey.GetProperty("KeyId").GetString()!);
        Ok("disk", "rewrap", File("r.img"));   // no --key: the key that wraps it now, at its new version
        Ok("disk", "read", File("r.img"), "--offset", "0", "--length", new FileInfo(payload).Length.ToString(System.Globalization.CultureInfo.InvariantCulture), "--out", File("r-back.txt"));

        var newArn = newKey.GetProperty("Arn").GetString()!;
        Assert.Contains(newArn, rewrapped, StringComparison.Ordinal);
        Assert.Equal(newArn, JsonDocument.Parse(Ok("disk", "inspect", File("r.img"), "--json").Stdout).RootElement.GetProperty("KmsKeyArn").GetString());
        Assert.Equal(System.IO.File.ReadAllBytes(payload), System.IO.File.ReadAllBytes(File("r-back.txt")));
        Assert.Equal(sectorsBefore, System.IO.File.ReadAllBytes(File("r.img"))[8192..]);
        var reEncrypts = JsonDocument.Parse(Ok("audit", "LookupEvents", "--EventName", "ReEncrypt", "--json").Stdout).RootElement.GetProperty("Events");
        Assert.Equal(new[] { newKey.GetProperty("KeyId").GetString(), newArn }.Order(StringComparer.Ordinal),
            reEncrypts.EnumerateArray().Select(e => e.GetProperty("requestParameters").GetProperty("DestinationKeyId").GetString()).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void The_DEK_requests_of_tde_disk_are_in_the_audit_trail()
    {
        Ok("disk", "create", File("au.img"), "--size", "64K");
        Ok("disk", "read", File("au.img"), "--offset", "0", "--length", "1", "--out", File("au.bin"));

        var events = JsonDocument.Parse(Ok("audit", "LookupEvents", "--json").Stdout).RootElement.GetProperty("Events").EnumerateArray()
            .Select(e => (Name: e.GetProperty("eventName").GetString(), Agent: e.GetProperty("userAgent").GetString())).ToList();
        var generated = JsonDocument.Parse(Ok("audit", "LookupEvents", "--EventName", "GenerateDataKey", "--json").Stdout).RootElement.GetProperty("Events");

        Assert.True(generated.GetArrayLength() >= 1);
        Assert.Contains(("GenerateDataKey", "tde-cli"), events);
        Assert.Contains(("Decrypt", "tde-cli"), events);
        Assert.Equal(0, CliProcess.Run(_home, "audit", "verify").ExitCode);
    }

    [Theory]
    [InlineData("create", "x.img", "--size", "lots")]
    [InlineData("create", "x.img", "--size", "0")]
    [InlineData("create", "x.img", "--size", "-4096")]
    [InlineData("create", "x.img")]
    [InlineData("create", "x.img", "--size", "1M", "--sector-size", "1024")]
    [InlineData("read", "x.img", "--offset", "0")]
    [InlineData("write", "x.img", "--offset", "0", "--form", "typo.bin")]
    [InlineData("snapshot", "x.img")]
    [InlineData("defrag", "x.img")]
    public void A_command_line_it_cannot_use_exits_2_with_the_usage(params string[] args)
    {
        var result = CliProcess.Run(_home, ["disk", .. args]);

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("tde disk create IMAGE --size SIZE", result.Stderr, StringComparison.Ordinal);
        Assert.False(System.IO.File.Exists(File("x.img")));
    }
}
