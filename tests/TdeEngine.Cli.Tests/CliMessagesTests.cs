namespace TdeEngine.Cli.Tests;

/// <summary>Messages that tell a CLI user what to do next name the right command.</summary>
public sealed class CliMessagesTests : IDisposable
{
    private readonly string _home = Path.Combine(Path.GetTempPath(), "tde-cli-messages-" + Guid.NewGuid().ToString("N"));

    public CliMessagesTests() => Directory.CreateDirectory(_home);

    public void Dispose() => Directory.Delete(_home, recursive: true);

    private string File(string name) => Path.Combine(_home, name);

    [Fact]
    public void An_unknown_ram_action_points_to_the_ram_help()
    {
        var result = CliProcess.Run(_home, "ram", "Frob");

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("Run 'tde ram --help'", result.Stdout + result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("tde kms --help", result.Stdout + result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void The_top_level_help_lists_the_server_and_every_db_command()
    {
        var result = CliProcess.Run(_home, "--help");

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("tde kms serve [--port N]", result.Stdout, StringComparison.Ordinal);
        Assert.Contains("tde db backup|verify|rewrap|rekey FILE", result.Stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("db")]
    [InlineData("disk")]
    [InlineData("oss")]
    [InlineData("audit")]
    public void Help_ends_with_a_newline(string group)
    {
        var result = CliProcess.Run(_home, group, "--help");

        Assert.Equal(0, result.ExitCode);
        Assert.EndsWith("$TDE_HOME.\n", result.Stdout.Replace("never).\n", "$TDE_HOME.\n", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    [Fact]
    public void Serve_help_prints_its_usage()
    {
        var result = CliProcess.Run(_home, "kms", "serve", "--help");
        var afterOptions = CliProcess.Run(_home, "kms", "serve", "--port", "0", "--help");

        Assert.Equal(0, result.ExitCode);
        Assert.StartsWith("Usage: tde kms serve [--port N]", result.Stdout, StringComparison.Ordinal);
        Assert.Equal("", result.Stderr);
        Assert.Equal(0, afterOptions.ExitCode);
        Assert.Equal(result.Stdout, afterOptions.Stdout);
    }

    [Fact]
    public void A_RAM_action_help_prints_its_usage_as_a_KMS_action_help_does()
    {
        var kms = CliProcess.Run(_home, "kms", "Decrypt", "--help");
        var ram = CliProcess.Run(_home, "ram", "CreateUser", "--help");

        Assert.Equal(0, kms.ExitCode);
        Assert.Equal(0, ram.ExitCode);
        Assert.StartsWith("tde ram CreateUser --UserName NAME", ram.Stdout, StringComparison.Ordinal);
        Assert.Equal("", ram.Stderr);
    }

    [Fact]
    public void Encrypting_a_TDE_database_says_it_is_already_encrypted()
    {
        Assert.Equal(0, CliProcess.Run(_home, "db", "create", File("e.db")).ExitCode);
        var before = System.IO.File.ReadAllBytes(File("e.db"));

        var result = CliProcess.Run(_home, "db", "encrypt", File("e.db"), "--out", File("e2.db"));

        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith($"Error: Tde.InvalidParameter: '{File("e.db")}' is already a TDE database: there is nothing to encrypt.", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("'tde db rekey'", result.Stderr, StringComparison.Ordinal);
        Assert.Equal(before, System.IO.File.ReadAllBytes(File("e.db")));
        Assert.False(System.IO.File.Exists(File("e2.db")));
    }

    [Fact]
    public void Encrypting_a_missing_file_says_it_does_not_exist()
    {
        var result = CliProcess.Run(_home, "db", "encrypt", File("nonexist.db"));

        Assert.Equal(1, result.ExitCode);
        Assert.Contains($"'{File("nonexist.db")}' does not exist.", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("is not a plaintext SQLite database", result.Stderr, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("status")]
    [InlineData("verify")]
    [InlineData("encrypt")]
    [InlineData("sql")]
    public void A_folder_named_as_a_database_is_called_a_folder(string command)
    {
        var folder = File("a-folder.db");
        Directory.CreateDirectory(folder);

        var result = command == "sql" ? CliProcess.Run(_home, "db", "sql", folder, "SELECT 1") : CliProcess.Run(_home, "db", command, folder);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains($"'{folder}' is a folder, not a database file.", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Rekey_prints_its_final_progress_line_once()
    {
        Assert.Equal(0, CliProcess.Run(_home, "db", "create", File("r.db")).ExitCode);
        Assert.Equal(0, CliProcess.Run(_home, "db", "sql", File("r.db"), "CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('x');").ExitCode);

        var result = CliProcess.Run(_home, "db", "rekey", File("r.db"));

        Assert.True(result.ExitCode == 0, result.Stdout + result.Stderr);
        var lines = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(lines.Distinct().Count(), lines.Length);
    }

    [Fact]
    public void Disk_and_bucket_errors_name_the_command_that_creates_one()
    {
        System.IO.File.WriteAllText(File("not-a-disk.img"), new string('x', 4096));
        Directory.CreateDirectory(File("not-a-bucket"));

        var disk = CliProcess.Run(_home, "disk", "inspect", File("not-a-disk.img"));
        var bucket = CliProcess.Run(_home, "oss", "ls", File("not-a-bucket"));

        Assert.Equal(1, disk.ExitCode);
        Assert.Contains("tde disk create", disk.Stderr, StringComparison.Ordinal);
        Assert.Equal(1, bucket.ExitCode);
        Assert.Contains("tde oss mb", bucket.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void A_damaged_key_store_is_reported_in_one_line_not_as_a_crash()
    {
        Assert.Equal(0, CliProcess.Run(_home, "kms", "ListKeys").ExitCode);
        System.IO.File.WriteAllText(File("kms.db"), new string('x', 4096));

        var result = CliProcess.Run(_home, "kms", "ListKeys");

        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("tde: ", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void A_TDE_HOME_that_is_a_file_is_reported_in_one_line_not_as_a_crash()
    {
        System.IO.File.WriteAllText(File("home-file"), "x");

        var result = CliProcess.Run(_home, new Dictionary<string, string> { ["TDE_HOME"] = File("home-file") }, "kms", "ListKeys");

        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith("tde: ", result.Stderr, StringComparison.Ordinal);
        Assert.Contains(File("home-file"), result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void The_top_level_help_lists_audit_prune()
    {
        var result = CliProcess.Run(_home, "--help");

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("tde audit verify|LookupEvents|export|checkpoint|prune", result.Stdout, StringComparison.Ordinal);
    }
}
