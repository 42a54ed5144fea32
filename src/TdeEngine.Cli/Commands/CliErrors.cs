using TdeEngine.Kms.Errors;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Cli.Commands;

/// <summary>
/// How <c>tde disk</c> and <c>tde oss</c> report a refusal: <c>Error: CODE: message</c> on stderr and
/// exit code 1, as <c>tde db</c> does. The code is the KMS's (<c>Rejected.Disabled</c>, ...) or the
/// storage library's (<c>Tde.DiskInUse</c>, <c>NoSuchKey</c>, ...), unchanged.
/// </summary>
internal static class CliErrors
{
    /// <summary>Runs <paramref name="command"/>, turning KMS, storage and file errors into a printed code and exit 1.</summary>
    /// <remarks>Usage errors (<see cref="CliUsageException"/>) pass through to <c>Program</c>, which exits 2.</remarks>
    public static int Run(TextWriter stderr, Func<int> command)
    {
        try
        {
            return command();
        }
        catch (TdeStorageException e)
        {
            return Print(stderr, e.Code, e.Message);
        }
        catch (KmsException e)
        {
            return Print(stderr, e.Code, e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidDataException)
        {
            return Print(stderr, "Tde.Failed", e.Message);
        }
    }

    public static int Print(TextWriter stderr, string code, string message)
    {
        stderr.WriteLine($"Error: {code}: {message}");
        return 1;
    }
}
