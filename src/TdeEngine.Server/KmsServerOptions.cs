namespace TdeEngine.Server;

/// <summary>Settings of the KMS server.</summary>
public sealed class KmsServerOptions
{
    /// <summary>Address to bind. Default 127.0.0.1: the server is not reachable from other hosts unless you say so.</summary>
    public string Host { get; set; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one. Default 8080.</summary>
    public int Port { get; set; } = 8080;

    /// <summary>A PKCS#12 certificate to serve HTTPS with; null serves plain HTTP.</summary>
    public string? CertificatePath { get; set; }

    /// <summary>The environment variable that holds the certificate password (never a command-line argument).</summary>
    public string? CertificatePasswordVariable { get; set; }

    /// <summary>Largest request body accepted. Default 256 KiB (Encrypt takes at most 6 KiB of plaintext).</summary>
    public long MaxRequestBodyBytes { get; set; } = 256 * 1024;

    /// <summary>How often due key deletions and rotations run. Default one minute.</summary>
    public TimeSpan HousekeepingInterval { get; set; } = TimeSpan.FromMinutes(1);
}
