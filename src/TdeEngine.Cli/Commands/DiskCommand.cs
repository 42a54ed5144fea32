using System.Buffers;
using System.Text.Json;
using TdeEngine.Disks;
using TdeEngine.Kms.Envelope;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Cli.Commands;

/// <summary><c>tde disk ...</c>: create, inspect, write, read, snapshot and re-wrap ECS-style encrypted disk images on the embedded KMS.</summary>
internal static class DiskCommand
{
    private const string Usage = """
        Usage:
          tde disk create IMAGE --size SIZE [--key KEY] [--sector-size 512|4096] [--context JSON] [--preallocate]
                                                                   (--preallocate: every sector written now, so none can be reset to zeros)
          tde disk inspect IMAGE [--json]                          (the header only: no KMS call, works while attached or the key is disabled)
          tde disk write IMAGE --offset N [--from FILE]            (the bytes of FILE, or of stdin, at byte offset N)
          tde disk read IMAGE --offset N --length L [--out FILE]   (raw bytes to stdout or FILE)
          tde disk snapshot IMAGE SNAPSHOT                         (a new image with the same key, DEK and data)
          tde disk copy IMAGE TARGET [--key KEY] [--context JSON]  (a copy under a new DEK: every written sector re-encrypted; default: the same key and context)
          tde disk rewrap IMAGE [--key KEY]                        (the DEK under KEY's current version; only the header changes)
        SIZE is bytes or a number with K, M, G or T (powers of 1024): 64M, 1G.
        KEY is a KMS key id, ARN or alias (default alias/acs/ecs; for rewrap, the key that wraps the DEK now).
        The DEK is bound to the context JSON (default {"acs:ecs:disk":"<IMAGE's file name>"}). The KMS lives under $TDE_HOME.
        """;

    private const string DefaultKey = "alias/acs/ecs";

    // Bytes moved per disk Read or Write call by 'read' and 'write'.
    private const int ChunkBytes = 1 << 20;

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
            "create" => Create(CommandLine.Parse(rest, Usage, ["size", "key", "sector-size", "context"], "preallocate"), stdout, stderr),
            "inspect" => Inspect(CommandLine.Parse(rest, Usage, [], "json"), stdout, stderr),
            "write" => Write(CommandLine.Parse(rest, Usage, ["offset", "from"]), stdout, stderr),
            "read" => Read(CommandLine.Parse(rest, Usage, ["offset", "length", "out"]), stdout, stderr),
            "snapshot" => Snapshot(CommandLine.Parse(rest, Usage, []), stdout, stderr),
            "copy" => Copy(CommandLine.Parse(rest, Usage, ["key", "context"]), stdout, stderr),
            "rewrap" => Rewrap(CommandLine.Parse(rest, Usage, ["key"]), stdout, stderr),
            _ => throw new CliUsageException($"unknown 'tde disk' command '{verb}'.\n{Usage}"),
        };
    }

    private static int Create(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var image = Image(line, 1);
        var size = line.Size("size", line.Required("size"));
        var sectorSize = line.Get("sector-size") switch
        {
            null => 4096,
            "512" => 512,
            "4096" => 4096,
            var other => throw line.Usage($"--sector-size must be 512 or 4096, not '{other}'."),
        };
        return CliErrors.Run(stderr, () =>
        {
            var context = line.Get("context") is { } json
                ? EncryptionContext.Parse(json, "--context")
                : EncryptionContext.From([new("acs:ecs:disk", Path.GetFileName(Path.GetFullPath(image)))]);
            using var services = CliServices.Open();
            EncryptedDisk.Create(image, size, CliDataKeys.AsRoot(services), line.Get("key") ?? DefaultKey, context, sectorSize, line.Has("preallocate")).Dispose();
            stdout.WriteLine($"created {Path.GetFullPath(image)}");
            PrintInfo(stdout, EncryptedDisk.Inspect(image));
            return 0;
        });
    }

    private static int Inspect(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var image = Image(line, 1);
        return CliErrors.Run(stderr, () =>
        {
            var info = EncryptedDisk.Inspect(image);
            if (!line.Has("json"))
            {
                stdout.WriteLine($"image:           {Path.GetFullPath(image)}");
                PrintInfo(stdout, info);
                return 0;
            }

            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
            {
                w.WriteStartObject();
                w.WriteString("Path", Path.GetFullPath(image));
                w.WriteString("DiskId", info.DiskId);
                w.WriteNumber("Size", info.Size);
                w.WriteNumber("SectorSize", info.SectorSize);
                w.WriteString("Cipher", info.Cipher);
                w.WriteBoolean("Preallocated", info.Preallocated);
                w.WriteString("KmsKeyArn", info.KmsKeyArn);
                w.WriteStartObject("EncryptionContext");
                foreach (var (key, value) in info.Context.Pairs)
                {
                    w.WriteString(key, value);
                }

                w.WriteEndObject();
                w.WriteNumber("FormatVersion", info.FormatVersion);
                w.WriteEndObject();
            }

            stdout.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
            return 0;
        });
    }

    private static int Write(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var image = Image(line, 1);
        var offset = line.NonNegative("offset", line.Required("offset"));
        var from = line.Get("from");
        return CliErrors.Run(stderr, () =>
        {
            using var services = CliServices.Open();
            using var disk = EncryptedDisk.Open(image, CliDataKeys.AsRoot(services));
            using var source = from is null ? Console.OpenStandardInput() : new FileStream(from, FileMode.Open, FileAccess.Read, FileShare.Read);
            if (source.CanSeek)
            {
                // A file's length is known: refuse before the first byte rather than write part of it.
                CheckRange(disk.Path, disk.Size, offset, source.Length - source.Position);
            }

            var buffer = ArrayPool<byte>.Shared.Rent(ChunkBytes);
            long written = 0;
            try
            {
                int read;
                while ((read = source.ReadAtLeast(buffer.AsSpan(0, ChunkBytes), ChunkBytes, throwOnEndOfStream: false)) > 0)
                {
                    try
                    {
                        disk.Write(offset + written, buffer.AsSpan(0, read));
                    }
                    catch (TdeStorageException e) when (e.Code == TdeStorageException.Codes.InvalidParameter && written > 0)
                    {
                        // Only stdin gets here (its length is not known up front): say what did land on the disk.
                        disk.Flush();
                        throw new TdeStorageException(e.Code, $"{e.Message} The first {written} bytes from stdin were written at offset {offset}.", disk.Path, e.PageNumber, e);
                    }

                    written += read;
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
            }

            disk.Flush();
            stdout.WriteLine($"wrote {written} bytes at offset {offset} of disk {disk.DiskId} ({disk.Path})");
            return 0;
        });
    }

    private static int Read(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var image = Image(line, 1);
        var offset = line.NonNegative("offset", line.Required("offset"));
        var length = line.NonNegative("length", line.Required("length"));
        var output = line.Get("out");
        if (output is not null && Path.GetFullPath(output) == Path.GetFullPath(image))
        {
            throw line.Usage("--out must not be the disk image itself: the plaintext would replace it.");
        }

        return CliErrors.Run(stderr, () =>
        {
            using var services = CliServices.Open();
            using var disk = EncryptedDisk.Open(image, CliDataKeys.AsRoot(services));
            CheckRange(disk.Path, disk.Size, offset, length);   // before --out is created
            stdout.Flush();
            if (output is null)
            {
                using var standardOutput = Console.OpenStandardOutput();
                CopyOut(disk, offset, length, standardOutput);
            }
            else
            {
                OutputFile.Write(output, destination => CopyOut(disk, offset, length, destination));
            }

            return 0;
        });
    }

    private static void CopyOut(EncryptedDisk disk, long offset, long length, Stream destination)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        try
        {
            for (long done = 0; done < length;)
            {
                var chunk = buffer.AsSpan(0, (int)Math.Min(ChunkBytes, length - done));
                disk.Read(offset + done, chunk);
                destination.Write(chunk);
                done += chunk.Length;
            }
        }
        finally
        {
            // It held plaintext.
            ArrayPool<byte>.Shared.Return(buffer, clearArray: true);
        }
    }

    private static int Snapshot(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var image = Image(line, 2);
        var snapshot = line.Operand(1, "SNAPSHOT (the snapshot image to write)");
        return CliErrors.Run(stderr, () =>
        {
            using var services = CliServices.Open();
            using var disk = EncryptedDisk.Open(image, CliDataKeys.AsRoot(services));
            disk.CreateSnapshot(snapshot);
            stdout.WriteLine($"snapshot of disk {disk.DiskId} written to {Path.GetFullPath(snapshot)} (same DEK, wrapped by {disk.KmsKeyArn})");
            return 0;
        });
    }

    private static int Copy(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var image = Image(line, 2);
        var target = line.Operand(1, "TARGET (the re-encrypted image to write)");
        return CliErrors.Run(stderr, () =>
        {
            using var services = CliServices.Open();
            using var disk = EncryptedDisk.Open(image, CliDataKeys.AsRoot(services));
            var context = line.Get("context") is { } json ? EncryptionContext.Parse(json, "--context") : disk.Context;
            var info = disk.CreateReencryptedCopy(target, CliDataKeys.AsRoot(services), line.Get("key") ?? disk.KmsKeyArn, context);
            stdout.WriteLine($"re-encrypted copy of disk {disk.DiskId} written to {Path.GetFullPath(target)} under a new DEK");
            PrintInfo(stdout, info);
            return 0;
        });
    }

    private static int Rewrap(CommandLine line, TextWriter stdout, TextWriter stderr)
    {
        var image = Image(line, 1);
        return CliErrors.Run(stderr, () =>
        {
            // Without --key: the key that wraps the DEK now, so a rewrap after CreateKeyVersion moves it to the new version.
            var key = line.Get("key") ?? EncryptedDisk.Inspect(image).KmsKeyArn;
            using var services = CliServices.Open();
            var info = EncryptedDisk.Rewrap(image, CliDataKeys.AsRoot(services), key);
            stdout.WriteLine($"re-wrapped {Path.GetFullPath(image)}: the DEK of disk {info.DiskId} is now wrapped by {info.KmsKeyArn} (current version)");
            return 0;
        });
    }

    // The IMAGE operand, and no more than 'operands' operands in all.
    private static string Image(CommandLine line, int operands)
    {
        line.AtMostOperands(operands);
        return line.Operand(0, "IMAGE (the disk image file)");
    }

    private static void CheckRange(string path, long size, long offset, long length)
    {
        if (offset > size || length > size - offset)
        {
            throw new TdeStorageException(TdeStorageException.Codes.InvalidParameter,
                $"{length} bytes at offset {offset} are not within the disk '{path}' ({size} bytes); nothing was read or written. Stay within [0, {size}).",
                path);
        }
    }

    private static void PrintInfo(TextWriter stdout, EncryptedDiskInfo info)
    {
        stdout.WriteLine($"disk id:         {info.DiskId}");
        stdout.WriteLine($"size:            {info.Size} bytes");
        stdout.WriteLine($"sector size:     {info.SectorSize} bytes");
        stdout.WriteLine($"cipher:          {info.Cipher}{(info.Preallocated ? ", preallocated (no sector reads as never written)" : ", sparse (never-written sectors read as zeros)")}");
        stdout.WriteLine($"KMS key:         {info.KmsKeyArn}");
        stdout.WriteLine($"context:         {info.Context}");
        stdout.WriteLine($"format version:  {info.FormatVersion}");
    }
}
