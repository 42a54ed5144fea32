using System.Text;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Objects;
using TdeEngine.Sqlite;

namespace TdeEngine.Cli.Commands;

/// <summary>
/// The demo's OSS-style scenario: server-side encryption of objects in a bucket, with the
/// OSS-managed key (<c>AES256</c>, the service key <c>alias/acs/oss</c>) and with a customer CMK
/// (<c>KMS</c>), a data key per object bound to the object's name, and revocation, as the OSS
/// service role through RAM and the audit trail.
/// </summary>
internal static class DemoOssBucket
{
    public const string RoleName = "AliyunServiceRoleForOSS";

    public static void Run(TextWriter o, CliServices services, DemoAdmin admin, int firstStep)
    {
        var kms = services.Kms;
        var folder = Path.Combine(kms.Options.Home, "demo", "oss", "demo-invoices");
        DemoCommand.ResetFolder(folder);
        var role = DemoCommand.ServiceRole(services, admin.Root, RoleName, "oss-demo", "oss-sse");
        var keys = new GatewayDataKeyProvider(services.Gateway, () => role with { RequestId = KmsCallContext.NewRequestId() });

        DemoCommand.Step(o, firstStep, "OSS-style server-side encryption: a bucket encrypts by default (AES256, the OSS-managed key alias/acs/oss)");
        var bucket = LocalBucket.Create(folder, "demo-invoices", keys, kms.Options.RegionId, admin.Root.AccountId);
        var readme = bucket.PutObject("README.txt", new MemoryStream("Invoices of the demo company. Aerosmith tour 2026."u8.ToArray()));
        Print(o, readme);

        var key = admin.CreateKey("demo: OSS bucket demo-invoices (customer key)");
        bucket.PutBucketEncryption("KMS", key);
        o.WriteLine($"   PutBucketEncryption: SSEAlgorithm KMS, KMSMasterKeyID {key}");
        var invoice = Encoding.UTF8.GetBytes(Invoice());
        const string invoiceKey = "invoices/2026/11/inv-0042.json";
        Print(o, bucket.PutObject(invoiceKey, new MemoryStream(invoice)));
        o.WriteLine($"   plaintext artist names found in the object's file: {DemoCommand.CountPlaintext(bucket.PathOf(invoiceKey))}");
        using (var range = bucket.GetObject(invoiceKey, 0, 39))
        {
            var head = new byte[40];
            range.ReadExactly(head);
            o.WriteLine($"   GetObject Range: bytes=0-39 -> {Encoding.UTF8.GetString(head)}");
        }

        DemoCommand.Step(o, firstStep + 1, "Each object's data key is bound to its name: a copy of its file under another name does not open");
        File.Copy(bucket.PathOf(invoiceKey), bucket.PathOf("invoices/2026/11/inv-0043.json"));
        DemoCommand.Refused(o, "GetObject invoices/2026/11/inv-0043.json (a copied file)", () => bucket.GetObject("invoices/2026/11/inv-0043.json").Dispose());
        DemoCommand.Refused(o, "HeadObject of it (no KMS call: the header names another object)", () => bucket.HeadObject("invoices/2026/11/inv-0043.json"));

        DemoCommand.Step(o, firstStep + 2, "Revoke the bucket's key (DisableKey): GetObject is refused, HeadObject still answers; EnableKey and it reads");
        admin.Call("DisableKey", ("KeyId", key));
        DemoCommand.Refused(o, "GetObject " + invoiceKey, () => bucket.GetObject(invoiceKey).Dispose());
        o.WriteLine($"   HeadObject: {bucket.HeadObject(invoiceKey).Size} bytes; ListObjects invoices/: {string.Join(", ", bucket.ListObjects("invoices/").Select(m => m.Key))}");
        admin.Call("EnableKey", ("KeyId", key));
        using (var reader = new StreamReader(bucket.GetObject(invoiceKey)))
        {
            o.WriteLine($"   EnableKey: GetObject reads {reader.ReadToEnd().Length} characters again; README.txt under alias/acs/oss was never affected.");
        }
    }

    private static void Print(TextWriter o, ObjectMetadata m) =>
        o.WriteLine($"   PutObject {m.Key}: {m.Size} bytes, x-oss-server-side-encryption: {m.ServerSideEncryption}, key {m.KmsKeyId}, ETag {m.ETag}");

    // A small JSON document with recognisable names, so the scan of the file on disk means something.
    private static string Invoice() =>
        """{"invoice":"INV-0042","customer":"Led Zeppelin Ltd","lines":[{"item":"AC/DC live album","qty":3},{"item":"Aerosmith poster","qty":1}],"total":57.30}""";
}
