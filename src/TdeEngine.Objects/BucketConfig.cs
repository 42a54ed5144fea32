using System.Text.Json;
using TdeEngine.Kms.Store;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Objects;

/// <summary>
/// The bucket's <c>.tde-bucket.json</c>: name, region, account and default encryption. No secret.
/// <code>{"format":1,"name":"photos","regionId":"cn-hangzhou","accountId":"1234567890123456","sseAlgorithm":"AES256","kmsMasterKeyId":null}</code>
/// </summary>
internal sealed record BucketConfig(string Name, string RegionId, string AccountId, BucketEncryption Encryption)
{
    public const string FileName = ".tde-bucket.json";
    public const string TempPrefix = ".tde-tmp-";

    /// <summary>Writes the config atomically: temp file, fsync, rename over the old one, fsync of the directory.</summary>
    public void Save(string directory)
    {
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteNumber("format", 1);
            json.WriteString("name", Name);
            json.WriteString("regionId", RegionId);
            json.WriteString("accountId", AccountId);
            json.WriteString("sseAlgorithm", Encryption.SseAlgorithm);
            json.WriteString("kmsMasterKeyId", Encryption.KmsMasterKeyId);
            json.WriteEndObject();
        }

        var temp = Path.Combine(directory, TempPrefix + Guid.NewGuid().ToString("N"));
        try
        {
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                file.Write(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
                file.Flush(flushToDisk: true);
            }

            File.Move(temp, Path.Combine(directory, FileName), overwrite: true);
            DirectoryFlush.Flush(directory);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>Reads the config of the bucket in <paramref name="directory"/>; NoSuchBucket when there is none.</summary>
    public static BucketConfig Load(string directory)
    {
        var path = Path.Combine(directory, FileName);
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new TdeStorageException(TdeStorageException.Codes.NoSuchBucket,
                $"There is no bucket in '{directory}' (no {FileName}). Create it with LocalBucket.Create (from the command line: tde oss mb), or check the path.", path);
        }

        try
        {
            using var document = JsonDocument.Parse(bytes);
            var root = document.RootElement;
            if (root.GetProperty("format").GetInt32() != 1)
            {
                throw new FormatException("unknown format");
            }

            var algorithm = root.GetProperty("sseAlgorithm").GetString() ?? throw new FormatException("no sseAlgorithm");
            var keyId = root.GetProperty("kmsMasterKeyId").GetString();
            return new BucketConfig(
                root.GetProperty("name").GetString() ?? throw new FormatException("no name"),
                root.GetProperty("regionId").GetString() ?? throw new FormatException("no regionId"),
                root.GetProperty("accountId").GetString() ?? throw new FormatException("no accountId"),
                new BucketEncryption(algorithm, keyId));
        }
        catch (Exception e) when (e is JsonException or FormatException or KeyNotFoundException or InvalidOperationException)
        {
            throw new TdeStorageException(TdeStorageException.Codes.EnvelopeDamaged,
                $"The bucket configuration '{path}' is damaged ({e.Message}). Restore it from a backup; the objects themselves are intact.", path, inner: e);
        }
    }
}
