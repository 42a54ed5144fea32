using System.Buffers;
using System.Globalization;
using System.Text.Json;
using TdeEngine.Objects;
using TdeEngine.Storage.Keys;

namespace TdeEngine.Cli.Commands;

/// <summary><c>tde oss ...</c>: OSS-style buckets in local folders, with server-side encryption on the embedded KMS.</summary>
internal static class OssCommand
{
    private const string Usage = """
        Usage:
          tde oss mb DIR --bucket NAME                                  (a bucket in DIR; default encryption AES256)
          tde oss encryption DIR [AES256 | KMS [--key KEY]]             (PutBucketEncryption; without an algorithm, print the current one)
          tde oss put DIR OBJECT_KEY [FILE] [--sse AES256|KMS] [--key KEY]   (FILE, or stdin; prints the object's metadata)
          tde oss get DIR OBJECT_KEY [--range START-END] [--out FILE]  (raw bytes to stdout or FILE; END inclusive, may be left out)
          tde oss head DIR OBJECT_KEY [--json]                          (the header only: no KMS call)
          tde oss ls DIR [--prefix P] [--json]                          (no KMS call)
          tde oss rm DIR OBJECT_KEY
          tde oss rewrap DIR OBJECT_KEY --key KEY                       (the object's data key under KEY; the data is not re-encrypted)
        KEY is a KMS key id, ARN or alias; KMS without --key and AES256 use the OSS-managed key alias/acs/oss.
        The region and account of the bucket are the embedded KMS's. The KMS lives under $TDE_HOME.
        """;

    // Bytes per copy step of 'get'.
    private const int ChunkBytes = 1 << 16;

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        if (CommandLine.Help(args, Usage, stdout, stderr) is { } exit)
        {
            return exit;
        }

        var verb = args[0];
        var rest = args.AsSpan(1);
        return verb switch
        {
            "mb" => MakeBucket(CommandLine.Parse(rest, Usage, ["bucket"]), stdout, stderr),
            "encryption" => Encryption(CommandLine.Parse(rest, Usage, ["key"]), stdout, stderr),
            "put" => Put(CommandLine.Parse(rest, Usage, ["sse", "key"]), stdout, stderr),
            "get" => Get(CommandLine.Parse(rest, Usage, ["range", "out"]), stdout, stderr),
            "head" => Head(CommandLine.Parse(rest, Usage, [], "json"), stdout, stderr),
            "ls" => List(CommandLine.Parse(rest, Usage, ["prefix"], "json"), stdout, stderr),
            "rm" => Remove(CommandLine.Parse(rest, Usage, []), stdout, stderr),
            "rewrap" => Rewrap(CommandLine.Parse(rest, Usage, ["key"]), stdout, stderr),
            _ => throw new CliUsageException($"unknown 'tde oss' command '{verb}'.\n{Usage}"),
        };
    }

    private static int MakeBucket(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var directory = BucketFolder(line, 1);
        var name = line.Required("bucket");
        return CliErrors.Run(stderr, () =>
        {
            using var services = CliServices.Open();
            var bucket = LocalBucket.Create(directory, name, CliDataKeys.AsRoot(services), services.Kms.Options.RegionId, services.RootContext.AccountId);
            stdout.WriteLine($"created bucket {bucket.Name} in {Path.GetFullPath(directory)} (region {services.Kms.Options.RegionId}, account {services.RootContext.AccountId}); default encryption {bucket.Encryption.SseAlgorithm}");
            return 0;
        });
    }

    private static int Encryption(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var directory = BucketFolder(line, 2);
        var algorithm = line.Operands.Count > 1 ? line.Operands[1] : null;
        if (algorithm is null && line.Get("key") is not null)
        {
            throw line.Usage("--key needs the algorithm KMS: tde oss encryption DIR KMS --key KEY.");
        }

        return WithBucket(directory, stderr, (bucket, _) =>
        {
            if (algorithm is not null)
            {
                bucket.PutBucketEncryption(algorithm, line.Get("key"));
            }

            var encryption = bucket.Encryption;
            stdout.WriteLine($"SSEAlgorithm:    {encryption.SseAlgorithm}");
            stdout.WriteLine($"KMSMasterKeyID:  {encryption.KmsMasterKeyId ?? "(none: " + LocalBucket.ServiceKeyAlias + ")"}");
            return 0;
        });
    }

    private static int Put(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var directory = BucketFolder(line, 3);
        var objectKey = ObjectKey(line);
        var file = line.Operands.Count > 2 ? line.Operands[2] : null;
        return WithBucket(directory, stderr, (bucket, _) =>
        {
            using var content = file is null ? Console.OpenStandardInput() : new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read);
            PrintMetadata(stdout, bucket.PutObject(objectKey, content, line.Get("sse"), line.Get("key")));
            return 0;
        });
    }

    private static int Get(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var directory = BucketFolder(line, 2);
        var objectKey = ObjectKey(line);
        var range = line.Get("range") is { } text ? ParseRange(line, text) : ((long Start, long End)?)null;
        var output = line.Get("out");
        if (output is not null && Path.GetFullPath(output).StartsWith(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory)) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
        {
            throw line.Usage("--out must be outside the bucket's folder: plaintext written there would replace sealed objects.");
        }

        return WithBucket(directory, stderr, (bucket, _) =>
        {
            // The object opens (one KMS Decrypt) before --out is created, so a refusal leaves no file behind.
            using var content = range is var (start, end) ? bucket.GetObject(objectKey, start, end) : bucket.GetObject(objectKey);
            stdout.Flush();
            if (output is null)
            {
                using var standardOutput = Console.OpenStandardOutput();
                Copy(content, standardOutput);
                return 0;
            }

            OutputFile.Write(output, destination => Copy(content, destination));
            return 0;
        });
    }

    private static int Head(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var directory = BucketFolder(line, 2);
        var objectKey = ObjectKey(line);
        return WithBucket(directory, stderr, (bucket, _) =>
        {
            var metadata = bucket.HeadObject(objectKey);
            if (line.Has("json"))
            {
                WriteJson(stdout, w => WriteMetadata(w, metadata));
            }
            else
            {
                PrintMetadata(stdout, metadata);
            }

            return 0;
        });
    }

    private static int List(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var directory = BucketFolder(line, 1);
        var prefix = line.Get("prefix");
        return WithBucket(directory, stderr, (bucket, _) =>
        {
            var objects = bucket.ListObjects(prefix);
            if (line.Has("json"))
            {
                WriteJson(stdout, w =>
                {
                    w.WriteStartObject();
                    w.WriteString("Bucket", bucket.Name);
                    w.WriteString("Prefix", prefix ?? "");
                    w.WriteStartArray("Objects");
                    foreach (var metadata in objects)
                    {
                        WriteMetadata(w, metadata);
                    }

                    w.WriteEndArray();
                    w.WriteEndObject();
                });
                return 0;
            }

            foreach (var m in objects)
            {
                stdout.WriteLine($"{m.LastModified.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)}  {m.Size,12}  {m.ServerSideEncryption,-6}  {m.ETag}  {m.Key}");
            }

            stdout.WriteLine($"{objects.Count} object{(objects.Count == 1 ? "" : "s")} in bucket {bucket.Name}{(prefix is null ? "" : $" under '{prefix}'")}");
            return 0;
        });
    }

    private static int Remove(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var directory = BucketFolder(line, 2);
        var objectKey = ObjectKey(line);
        return WithBucket(directory, stderr, (bucket, _) =>
        {
            bucket.DeleteObject(objectKey);   // as in OSS, deleting a missing object is not an error
            stdout.WriteLine($"deleted {objectKey}");
            return 0;
        });
    }

    private static int Rewrap(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var directory = BucketFolder(line, 2);
        var objectKey = ObjectKey(line);
        var key = line.Required("key");
        return WithBucket(directory, stderr, (bucket, _) =>
        {
            var metadata = bucket.RewrapObject(objectKey, key);
            stdout.WriteLine($"re-wrapped {objectKey}: its data key is now wrapped by {metadata.KmsKeyId} (current version); the data was not re-encrypted");
            return 0;
        });
    }

    // Opens the KMS and the bucket in 'directory', and runs 'command' with both, printing refusals (exit 1).
    private static int WithBucket(string directory, TextWriter stderr, Func<LocalBucket, IDataKeyProvider, int> command) =>
        CliErrors.Run(stderr, () =>
        {
            using var services = CliServices.Open();
            var keys = CliDataKeys.AsRoot(services);
            return command(LocalBucket.Open(directory, keys), keys);
        });

    // The DIR operand, and no more than 'operands' operands in all.
    private static string BucketFolder(CommandLine line, int operands)
    {
        line.AtMostOperands(operands);
        return line.Operand(0, "DIR (the bucket's folder)");
    }

    private static string ObjectKey(CommandLine line) => line.Operand(1, "OBJECT_KEY (the object's name)");

    // START-END, both inclusive as in an HTTP Range header; END may be left out (to the end of the object).
    private static (long Start, long End) ParseRange(CommandLine line, string text)
    {
        var parts = text.Split('-');
        var end = long.MaxValue;
        if (parts.Length == 2
            && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var start)
            && (parts[1].Length == 0 || long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out end))
            && end >= start)
        {
            return (start, end);
        }

        throw line.Usage($"--range must be START-END or START- (byte offsets, END inclusive and not before START), not '{text}'.");
    }

    private static void Copy(Stream source, Stream destination)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        try
        {
            int read;
            while ((read = source.Read(buffer, 0, ChunkBytes)) > 0)
            {
                destination.Write(buffer, 0, read);
            }
        }
        finally
        {
            // It held plaintext.
            ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
        }
    }

    private static void PrintMetadata(TextWriter stdout, ObjectMetadata m)
    {
        stdout.WriteLine($"key:                            {m.Key}");
        stdout.WriteLine($"size:                           {m.Size} bytes");
        stdout.WriteLine($"x-oss-server-side-encryption:   {m.ServerSideEncryption}");
        stdout.WriteLine($"KMS key:                        {m.KmsKeyId}");
        stdout.WriteLine($"ETag:                           {m.ETag}");
        stdout.WriteLine($"last modified:                  {m.LastModified.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture)}");
    }

    private static void WriteMetadata(Utf8JsonWriter w, ObjectMetadata m)
    {
        w.WriteStartObject();
        w.WriteString("Key", m.Key);
        w.WriteNumber("Size", m.Size);
        w.WriteString("ServerSideEncryption", m.ServerSideEncryption);
        w.WriteString("KmsKeyId", m.KmsKeyId);
        w.WriteString("ETag", m.ETag);
        w.WriteString("LastModified", m.LastModified.UtcDateTime);
        w.WriteEndObject();
    }

    private static void WriteJson(TextWriter stdout, Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            write(w);
        }

        stdout.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
    }
}
