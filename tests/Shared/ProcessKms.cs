using TdeEngine.Kms;
using TdeEngine.Kms.KeyManagement;

namespace TdeEngine.Tests.Shared;

/// <summary>An embedded KMS in its own temp home for a whole test process, removed at exit. (Linked into the test projects that need it.)</summary>
internal static class ProcessKms
{
    public static KeyManagementService Open(string prefix)
    {
        var home = Path.Combine(Path.GetTempPath(), prefix + Guid.NewGuid().ToString("N"));
        var kms = KeyManagementService.Open(new KmsOptions { Home = home });
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            kms.Dispose();
            try
            {
                Directory.Delete(home, recursive: true);
            }
            catch (IOException)
            {
            }
        };
        return kms;
    }
}
