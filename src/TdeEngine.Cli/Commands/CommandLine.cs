using System.Globalization;

namespace TdeEngine.Cli.Commands;

/// <summary>
/// The arguments of one <c>tde disk</c> or <c>tde oss</c> command: <c>--name value</c> options, bare
/// flags such as <c>--json</c>, and the operands in order. Every mistake is a
/// <see cref="CliUsageException"/> (exit 2) that ends with the group's usage text.
/// </summary>
internal sealed class CommandLine
{
    private readonly Dictionary<string, string> _options;
    private readonly HashSet<string> _flags;
    private readonly string _usage;

    private CommandLine(Dictionary<string, string> options, HashSet<string> flags, List<string> operands, string usage)
    {
        _options = options;
        _flags = flags;
        Operands = operands;
        _usage = usage;
    }

    public IReadOnlyList<string> Operands { get; }

    /// <summary>
    /// For no arguments (the usage on stderr, exit 2) or a request for help (on stdout, exit 0): the
    /// exit code. Null when there is a command to run.
    /// </summary>
    public static int? Help(string[] args, string usage, TextWriter stdout, TextWriter stderr)
    {
        if (args.Length > 0 && args[0] is not ("-h" or "--help" or "help"))
        {
            return null;
        }

        // The usage texts end without a newline (they also end usage errors, written with WriteLine).
        (args.Length == 0 ? stderr : stdout).Write(usage.EndsWith('\n') ? usage : usage + "\n");
        return args.Length == 0 ? 2 : 0;
    }

    /// <summary>
    /// Reads <paramref name="args"/>. <paramref name="flags"/> are the options this command takes
    /// without a value and <paramref name="options"/> those that take one; any other <c>--name</c> is
    /// refused, so a typo does not silently fall back to a default.
    /// </summary>
    public static CommandLine Parse(ReadOnlySpan<string> args, string usage, string[] options, params string[] flags)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var set = new HashSet<string>(StringComparer.Ordinal);
        var operands = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg == "--")
            {
                operands.Add(arg);
                continue;
            }

            var name = arg[2..];
            if (Array.IndexOf(flags, name) >= 0)
            {
                set.Add(name);
            }
            else if (Array.IndexOf(options, name) >= 0)
            {
                if (i + 1 >= args.Length)
                {
                    throw new CliUsageException($"{arg} needs a value.\n{usage}");
                }

                values[name] = args[++i];
            }
            else
            {
                throw new CliUsageException($"unknown option '{arg}'.\n{usage}");
            }
        }

        return new CommandLine(values, set, operands, usage);
    }

    public string? Get(string name) => _options.GetValueOrDefault(name);

    public bool Has(string flag) => _flags.Contains(flag);

    /// <summary>A usage error that ends with the usage text.</summary>
    public CliUsageException Usage(string message) => new($"{message}\n{_usage}");

    /// <summary>The operand at <paramref name="index"/>; a usage error naming <paramref name="what"/> when it is missing.</summary>
    public string Operand(int index, string what) =>
        index < Operands.Count ? Operands[index] : throw Usage($"missing {what}.");

    /// <summary>Refuses operands beyond the first <paramref name="count"/>.</summary>
    public void AtMostOperands(int count)
    {
        if (Operands.Count > count)
        {
            throw Usage($"unexpected argument '{Operands[count]}'.");
        }
    }

    public string Required(string name) => Get(name) ?? throw Usage($"--{name} is required.");

    /// <summary>A whole number of at least zero, from <c>--name</c>.</summary>
    public long NonNegative(string name, string text) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw Usage($"--{name} must be a whole number of bytes (0 or more), not '{text}'.");

    /// <summary>The whole number in <c>--name</c> (from <paramref name="min"/> to <paramref name="max"/>), or <paramref name="absent"/> without it; anything else is a usage error.</summary>
    public int WholeNumber(string name, int min, int max, int absent) =>
        Get(name) is not { } text ? absent
        : int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max ? value
        : throw Usage($"--{name} must be a whole number from {min} to {max}, not '{text}'.");

    /// <summary>
    /// A size in bytes: digits, optionally followed by K, M, G or T (powers of 1024, so 64M is 64 MiB).
    /// Zero, a negative number or anything else is a usage error.
    /// </summary>
    public long Size(string name, string text)
    {
        var shift = text.Length == 0 ? 0 : char.ToUpperInvariant(text[^1]) switch
        {
            'K' => 10,
            'M' => 20,
            'G' => 30,
            'T' => 40,
            _ => 0,
        };
        var digits = shift == 0 ? text : text[..^1];
        if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number <= 0 || number > long.MaxValue >> shift)
        {
            throw Usage($"--{name} must be a positive size such as 65536, 64M or 1G, not '{text}'.");
        }

        return number << shift;
    }
}
