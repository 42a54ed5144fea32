namespace TdeEngine.Kms.Hsm;

/// <summary>Where the HSM is and how to log in. The PIN never comes from the command line or a log.</summary>
public sealed class HsmOptions
{
    /// <summary>The PKCS#11 module, for example <c>/usr/lib/softhsm/libsofthsm2.so</c>.</summary>
    public required string ModulePath { get; init; }

    /// <summary>The label of the token that holds the keys.</summary>
    public required string TokenLabel { get; init; }

    /// <summary>The environment variable that holds the user PIN (checked first).</summary>
    public string? PinEnvironmentVariable { get; init; } = "TDE_HSM_PIN";

    /// <summary>A file whose first line is the user PIN (used when the variable is not set).</summary>
    public string? PinFile { get; init; }

    /// <summary>Sessions kept open for concurrent operations. Default 8.</summary>
    public int SessionPoolSize { get; init; } = 8;

    /// <summary>Reads the PIN as bytes (the caller wipes them).</summary>
    internal byte[] ReadPin()
    {
        if (PinEnvironmentVariable is { } variable && Environment.GetEnvironmentVariable(variable) is { Length: > 0 } fromEnvironment)
        {
            return System.Text.Encoding.UTF8.GetBytes(fromEnvironment);
        }

        if (PinFile is { } file && File.Exists(file))
        {
            var bytes = File.ReadAllBytes(file);
            var end = Array.IndexOf(bytes, (byte)'\n');
            if (end < 0)
            {
                return bytes;
            }

            // The PIN is the first line: copy it out, and wipe the whole file's bytes.
            var pin = bytes[..(end > 0 && bytes[end - 1] == '\r' ? end - 1 : end)];
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(bytes);
            return pin;
        }

        throw new HsmException("C_Login", "CKR_PIN_INCORRECT",
            $"No HSM PIN: set the environment variable {PinEnvironmentVariable ?? "(none configured)"} or point PinFile at a file that holds it.");
    }
}
