using Microsoft.Data.Sqlite;
using TdeEngine.Kms.Errors;
using TdeEngine.Sqlite;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Cli.Commands;

/// <summary>
/// How <c>tde db</c>, <c>tde disk</c> and <c>tde oss</c> report a refusal: <c>Error: CODE: message</c>
/// on stderr and exit code 1. The code is the KMS's (<c>Rejected.Disabled</c>, ...), the storage
/// library's (<c>Tde.DiskInUse</c>, <c>NoSuchKey</c>, ...) unchanged, the TDE cause behind an SQLite
/// error, <c>SQLite.N</c> for SQLite's own, or <c>Tde.Failed</c> for an operating-system error (a file
/// that cannot be read or written) or a timeout.
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
        catch (SqliteException e)
        {
            return TdeSqlite.LastError is { } cause ? Print(stderr, cause.Code, cause.Message) : Print(stderr, $"SQLite.{e.SqliteErrorCode}", e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidDataException or FormatException or TimeoutException)
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
