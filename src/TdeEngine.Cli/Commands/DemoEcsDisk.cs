using System.Text;
using TdeEngine.Disks;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Sqlite;

namespace TdeEngine.Cli.Commands;

/// <summary>
/// The demo's ECS-style scenario: an encrypted cloud disk (a disk image sealed sector by sector
/// with XTS-AES-256 under a per-disk DEK), its snapshot, a disk made from the snapshot, and
/// revocation, all as the ECS disk-encryption service role through RAM and the audit trail.
/// </summary>
internal static class DemoEcsDisk
{
    public const string RoleName = "AliyunECSDiskEncryptDefaultRole";

    private const long DiskBytes = 64L << 20;

    public static void Run(TextWriter o, CliServices services, DemoAdmin admin, int firstStep, string? chinookScript)
    {
        var kms = services.Kms;
        var folder = Path.Combine(kms.Options.Home, "demo", "ecs");
        DemoCommand.ResetFolder(folder);
        var diskPath = Path.Combine(folder, "d-data.img");
        var snapshotPath = Path.Combine(folder, "s-data-snapshot.img");
        var fromSnapshotPath = Path.Combine(folder, "d-from-snapshot.img");

        var role = DemoCommand.ServiceRole(services, admin.Root, RoleName, "ecs-demo-instance", "ecs-disk-encryption");
        var keys = new GatewayDataKeyProvider(services.Gateway, () => role with { RequestId = KmsCallContext.NewRequestId() });
        var key = admin.CreateKey("demo: ECS data disk (customer key; ECS's default is alias/acs/ecs)");
        var context = EncryptionContext.From([new("acs:ecs:instanceId", "i-demo"), new("acs:ecs:disk", "data-1")]);

        // What a guest file system would write: the Chinook script as a file 1 MiB into the disk.
        var file = Encoding.UTF8.GetBytes(chinookScript ?? "INSERT INTO Artist(Name) VALUES ('AC/DC'), ('Aerosmith');");
        const long fileOffset = 1L << 20;

        DemoCommand.Step(o, firstStep, "ECS-style cloud disk: create a 64 MiB encrypted data disk under a CMK, as the ECS service role, and write a file");
        using (var disk = EncryptedDisk.Create(diskPath, DiskBytes, keys, key, context))
        {
            using (var stream = disk.AsStream())
            {
                stream.Position = fileOffset;
                stream.Write(file);
            }

            disk.Flush();
            o.WriteLine($"   disk {disk.DiskId}: {disk.Size >> 20} MiB in {disk.SectorSize}-byte sectors, XTS-AES-256, DEK wrapped by {disk.KmsKeyArn}");
            o.WriteLine($"   wrote a {file.Length:N0}-byte file at offset {fileOffset:N0} through a Stream; encryption context {disk.Context}");
        }

        // Read once detached: an attached image is locked against every other open, like a disk attached to an instance.
        o.WriteLine($"   plaintext artist names found in the disk image: {DemoCommand.CountPlaintext(diskPath)}");

        DemoCommand.Step(o, firstStep + 1, "Snapshot the attached disk and create a new disk from the snapshot: the data is there, still encrypted");
        using (var disk = EncryptedDisk.Open(diskPath, keys))
        {
            disk.CreateSnapshot(snapshotPath);
            DemoCommand.Refused(o, "attach the disk a second time", () => EncryptedDisk.Open(diskPath, keys).Dispose());
        }

        File.Copy(snapshotPath, fromSnapshotPath);
        using (var restored = EncryptedDisk.Open(fromSnapshotPath, keys))
        {
            var read = new byte[file.Length];
            restored.Read(fileOffset, read);
            o.WriteLine($"   disk from snapshot {Path.GetFileName(fromSnapshotPath)}: the file reads back {(read.AsSpan().SequenceEqual(file) ? "identical" : "DIFFERENT")}; plaintext artist names in the snapshot: {DemoCommand.CountPlaintext(snapshotPath)}");
        }

        DemoCommand.Step(o, firstStep + 2, "Revoke the disk's key (DisableKey): the disk and its snapshot no longer attach; EnableKey and they do");
        admin.Call("DisableKey", ("KeyId", key));
        DemoCommand.Refused(o, "attach the disk", () => EncryptedDisk.Open(diskPath, keys).Dispose());
        DemoCommand.Refused(o, "attach the disk made from the snapshot", () => EncryptedDisk.Open(fromSnapshotPath, keys).Dispose());
        o.WriteLine($"   its header still says who holds the key, without a KMS call: {EncryptedDisk.Inspect(diskPath).KmsKeyArn}");
        admin.Call("EnableKey", ("KeyId", key));
        using (var disk = EncryptedDisk.Open(diskPath, keys))
        {
            o.WriteLine($"   EnableKey: disk {disk.DiskId} attaches again.");
        }
    }
}
