namespace TdeEngine.Audit;

/// <summary>
/// The audit files hold encryption contexts and access key ids: like <c>kms.db</c> they are readable
/// by their owner only (0600 on Unix; Windows keeps the directory's access rules).
/// </summary>
internal static class OwnerOnly
{
    public static void Restrict(string path)
    {
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }
}
