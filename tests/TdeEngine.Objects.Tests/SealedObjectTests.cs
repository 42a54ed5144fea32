using System.Buffers.Binary;
using System.Text;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Secrets;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Keys;

namespace TdeEngine.Objects.Tests;

public sealed class SealedObjectTests : IDisposable
{
    private const int Chunk = SealedObject.DefaultChunkSize;
    private static readonly EncryptionContext Context = EncryptionContext.From([new("app", "objects-tests"), new("object", "o1")]);
    private static readonly Lazy<string> SharedKey = new(() => TestKms.CreateKey("sealed object tests"));
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(Chunk - 1)]
    [InlineData(Chunk)]
    [InlineData(Chunk + 1)]
    [InlineData(3 * Chunk + 4321)]
    [InlineData(5_000_000)]
    public void Seal_then_Open_round_trips_through_non_seekable_streams(int size)
    {
        var plaintext = Bytes.Random(size, seed: size);
        var sealedBytes = new MemoryStream();

        var info = SealedObject.Seal(new NonSeekableStream(new MemoryStream(plaintext)), new NonSeekableStream(sealedBytes),
            TestKms.Provider, SharedKey.Value, Context);

        Assert.Equal(size, info.PlaintextLength);
        var chunks = Math.Max(1, (size + Chunk - 1) / Chunk);
        Assert.Equal(1024 + size + 16L * chunks, sealedBytes.Length);
        using var reader = SealedObject.Open(new MemoryStream(sealedBytes.ToArray()), TestKms.Provider, Context);
        Assert.Equal(size, reader.Length);
        Assert.Equal(plaintext, Bytes.ReadAll(reader));
        Assert.Equal(size, SealedObject.Inspect(new MemoryStream(sealedBytes.ToArray())).PlaintextLength);
    }

    [Fact]
    public void Seek_and_Read_return_the_plaintext_of_random_ranges_across_chunk_boundaries()
    {
        const int chunkSize = 1000;
        var plaintext = Bytes.Random(7 * chunkSize + 123, seed: 7);
        var sealedBytes = new MemoryStream();
        SealedObject.Seal(new MemoryStream(plaintext), sealedBytes, TestKms.Provider, SharedKey.Value, Context, chunkSize);
        using var reader = SealedObject.Open(new MemoryStream(sealedBytes.ToArray()), TestKms.Provider, Context);
        var random = new Random(11);

        for (var i = 0; i < 200; i++)
        {
            var start = random.Next(0, plaintext.Length);
            var count = random.Next(0, 3 * chunkSize);
            var buffer = new byte[count];
            if (i % 2 == 0)
            {
                reader.Seek(start, SeekOrigin.Begin);
            }
            else
            {
                reader.Seek(start - plaintext.Length, SeekOrigin.End);
            }

            var read = ReadFully(reader, buffer);

            var expected = Math.Min(count, plaintext.Length - start);
            Assert.Equal(expected, read);
            Assert.Equal(plaintext.AsSpan(start, expected).ToArray(), buffer.AsSpan(0, read).ToArray());
            Assert.Equal(start + read, reader.Position);
        }

        reader.Position = plaintext.Length + 10;
        Assert.Equal(0, reader.Read(new byte[10]));
    }

    [Fact]
    public void Seal_writes_the_documented_header_byte_by_byte()
    {
        var sealedBytes = new MemoryStream();
        var info = SealedObject.Seal(new MemoryStream([]), sealedBytes, TestKms.Provider, SharedKey.Value, Context, 4096);
        var file = sealedBytes.ToArray();

        Assert.Equal("TDEOBJ\0\0"u8.ToArray(), file[..8]);
        Assert.Equal(1, BinaryPrimitives.ReadUInt16BigEndian(file.AsSpan(8)));
        Assert.Equal(1, BinaryPrimitives.ReadUInt16BigEndian(file.AsSpan(10)));
        Assert.Equal(4096u, BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(12)));
        Assert.Equal(1024u, BinaryPrimitives.ReadUInt32BigEndian(file.AsSpan(16)));
        Assert.Equal(info.ObjectId, Convert.ToHexStringLower(file.AsSpan(20, 16)));
        var contextLength = BinaryPrimitives.ReadUInt16BigEndian(file.AsSpan(36));
        Assert.Equal("{\"app\":\"objects-tests\",\"object\":\"o1\"}", Encoding.UTF8.GetString(file, 38, contextLength));
        var at = 38 + contextLength;
        Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(file.AsSpan(at)));   // no attributes
        at += 2;
        var arnLength = BinaryPrimitives.ReadUInt16BigEndian(file.AsSpan(at));
        Assert.Equal(SharedKey.Value, Encoding.UTF8.GetString(file, at + 2, arnLength));
        at += 2 + arnLength;
        var wrappedLength = BinaryPrimitives.ReadUInt16BigEndian(file.AsSpan(at));
        Assert.Equal("TKMS"u8.ToArray(), file.AsSpan(at + 2, 4).ToArray());
        Assert.All(file[(at + 2 + wrappedLength)..1024], b => Assert.Equal(0, b));
        Assert.Equal(1024 + 16, file.Length);   // an empty object is one final chunk: a tag alone
        Assert.Equal(("AES-256-GCM", 1, 4096, 1024), (info.Cipher, info.FormatVersion, info.ChunkSize, info.HeaderSize));
    }

    [Fact]
    public void The_file_holds_no_plaintext_and_identical_plaintexts_seal_differently()
    {
        var plaintext = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("TDE-PLAINTEXT-MARKER-0123456789|", 5000)));
        var first = _folder.File("first.obj");
        var second = _folder.File("second.obj");

        SealFile(plaintext, first);
        SealFile(plaintext, second);

        var a = File.ReadAllBytes(first);
        var b = File.ReadAllBytes(second);
        Assert.False(Bytes.Contains(a, "PLAINTEXT-MARKER"u8));
        Assert.False(Bytes.Contains(a, "TDE-PLAINTEXT"u8));
        Assert.Equal(a.Length, b.Length);
        Assert.NotEqual(a[20..36], b[20..36]);                     // object ids
        for (var offset = 1024; offset + 64 <= a.Length; offset += Chunk + 16)
        {
            Assert.NotEqual(a[offset..(offset + 64)], b[offset..(offset + 64)]);   // fresh DEK per object
        }
    }

    [Fact]
    public void A_flipped_byte_in_a_chunk_fails_with_ObjectAuthenticationFailed_naming_that_chunk()
    {
        var path = SealFile(Bytes.Random(5 * 1000 + 500, 1), chunkSize: 1000);
        var info = Inspect(path);
        FlipByte(path, 1024 + 2 * 1016 + 17);

        using var reader = SealedObject.Open(File.OpenRead(path), TestKms.Provider, Context);
        var buffer = new byte[1000];
        reader.Position = 1500;
        Assert.Equal(500, reader.Read(buffer, 0, 500));           // chunk 1 is intact
        var error = Assert.Throws<TdeStorageException>(() => ReadFully(reader, buffer));

        Assert.Equal(TdeStorageException.Codes.ObjectAuthenticationFailed, error.Code);
        Assert.Equal(2, error.PageNumber);
        Assert.Contains(info.ObjectId, error.Message, StringComparison.Ordinal);
        Assert.Equal(path, error.File);
    }

    [Fact]
    public void A_flipped_tag_byte_of_the_final_chunk_fails_at_Open()
    {
        var path = SealFile(Bytes.Random(2500, 2), chunkSize: 1000);
        FlipByte(path, new FileInfo(path).Length - 1);

        var error = Assert.Throws<TdeStorageException>(() => OpenAndReadAll(path));

        Assert.Equal(TdeStorageException.Codes.ObjectAuthenticationFailed, error.Code);
        Assert.Equal(2, error.PageNumber);
    }

    [Fact]
    public void Dropping_the_final_chunk_at_a_chunk_boundary_fails()
    {
        var path = SealFile(Bytes.Random(3000, 3), chunkSize: 1000);   // three full chunks, the third one final
        using (var file = new FileStream(path, FileMode.Open))
        {
            file.SetLength(1024 + 2 * 1016);
        }

        var error = Assert.Throws<TdeStorageException>(() => OpenAndReadAll(path));

        Assert.Equal(TdeStorageException.Codes.ObjectAuthenticationFailed, error.Code);
        Assert.Equal(1, error.PageNumber);   // chunk 1 is not sealed as the final chunk
    }

    [Theory]
    [InlineData(1024 + 1016 + 8)]   // inside chunk 1's tag
    [InlineData(1024)]              // no chunk at all
    public void Truncating_inside_a_chunk_fails(int length)
    {
        var path = SealFile(Bytes.Random(2500, 4), chunkSize: 1000);
        using (var file = new FileStream(path, FileMode.Open))
        {
            file.SetLength(length);
        }

        var error = Assert.Throws<TdeStorageException>(() => OpenAndReadAll(path));

        Assert.Equal(TdeStorageException.Codes.ObjectAuthenticationFailed, error.Code);
    }

    [Fact]
    public void Swapping_two_chunks_fails_at_the_first_one_read()
    {
        var path = SealFile(Bytes.Random(4500, 5), chunkSize: 1000);
        var bytes = File.ReadAllBytes(path);
        var chunk1 = bytes[(1024 + 1016)..(1024 + 2 * 1016)];
        bytes.AsSpan(1024 + 2 * 1016, 1016).CopyTo(bytes.AsSpan(1024 + 1016));
        chunk1.CopyTo(bytes.AsSpan(1024 + 2 * 1016));
        File.WriteAllBytes(path, bytes);

        var error = Assert.Throws<TdeStorageException>(() => OpenAndReadAll(path));

        Assert.Equal(TdeStorageException.Codes.ObjectAuthenticationFailed, error.Code);
        Assert.Equal(1, error.PageNumber);
    }

    [Fact]
    public void A_chunk_from_another_object_under_the_same_context_fails()
    {
        var first = SealFile(Bytes.Random(3500, 6), chunkSize: 1000, name: "a.obj");
        var second = SealFile(Bytes.Random(3500, 6), chunkSize: 1000, name: "b.obj");
        var a = File.ReadAllBytes(first);
        File.ReadAllBytes(second).AsSpan(1024, 1016).CopyTo(a.AsSpan(1024));
        File.WriteAllBytes(first, a);

        var error = Assert.Throws<TdeStorageException>(() => OpenAndReadAll(first));

        Assert.Equal(TdeStorageException.Codes.ObjectAuthenticationFailed, error.Code);
        Assert.Equal(0, error.PageNumber);
    }

    [Theory]
    [InlineData(15, 0x01)]   // chunk size 1000 -> 1001
    [InlineData(20, 0x80)]   // first byte of the object id
    [InlineData(35, 0x01)]   // last byte of the object id
    public void Changing_the_chunk_size_or_object_id_in_the_header_fails(int offset, byte mask)
    {
        var path = SealFile(Bytes.Random(2500, 8), chunkSize: 1000);
        FlipByte(path, offset, mask);

        var error = Assert.Throws<TdeStorageException>(() => OpenAndReadAll(path));

        Assert.Equal(TdeStorageException.Codes.ObjectAuthenticationFailed, error.Code);
    }

    [Fact]
    public void A_file_without_the_magic_is_NotSealedObject_and_a_broken_header_is_EnvelopeDamaged()
    {
        var plain = _folder.File("plain.bin");
        File.WriteAllBytes(plain, Bytes.Random(5000, 9));
        var tiny = _folder.File("tiny.bin");
        File.WriteAllBytes(tiny, "TDE"u8.ToArray());
        var broken = SealFile(Bytes.Random(100, 10));
        var bytes = File.ReadAllBytes(broken);
        BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(36), 60000);   // context length past the header
        File.WriteAllBytes(broken, bytes);

        Assert.Equal(TdeStorageException.Codes.NotSealedObject, Assert.Throws<TdeStorageException>(() => Inspect(plain)).Code);
        Assert.Equal(TdeStorageException.Codes.NotSealedObject, Assert.Throws<TdeStorageException>(() => OpenAndReadAll(tiny)).Code);
        Assert.Equal(TdeStorageException.Codes.EnvelopeDamaged, Assert.Throws<TdeStorageException>(() => OpenAndReadAll(broken)).Code);
    }

    [Fact]
    public void Open_with_another_expected_context_fails_with_InvalidParameter_before_any_KMS_call()
    {
        var path = SealFile(Bytes.Random(100, 12));
        var keys = new CountingKeyProvider(TestKms.Provider);
        var other = EncryptionContext.From([new("app", "objects-tests"), new("object", "o2")]);

        using var file = File.OpenRead(path);
        var error = Assert.Throws<TdeStorageException>(() => SealedObject.Open(file, keys, other, leaveOpen: true));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, error.Code);
        Assert.Contains("\"object\":\"o1\"", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, keys.Calls);
    }

    [Fact]
    public void A_disabled_key_refuses_Open_with_Rejected_Disabled_and_Inspect_still_works()
    {
        var key = TestKms.CreateKey("disabled key test");
        var path = SealFile(Bytes.Random(100, 13), kmsKeyId: key);
        TestKms.Disable(key);
        try
        {
            var error = Assert.Throws<KmsException>(() => OpenAndReadAll(path));

            Assert.Equal("Rejected.Disabled", error.Code);
            Assert.Equal(key, Inspect(path).KmsKeyArn);
        }
        finally
        {
            TestKms.Enable(key);
        }

        Assert.Equal(100, OpenAndReadAll(path).Length);
    }

    [Fact]
    public void Rewrap_changes_only_the_envelope_and_the_object_still_opens_after_the_old_key_is_disabled()
    {
        var oldKey = TestKms.CreateKey("rewrap old");
        var newKey = TestKms.CreateKey("rewrap new");
        var plaintext = Bytes.Random(3 * Chunk + 99, 14);
        var path = SealFile(plaintext, kmsKeyId: oldKey);
        var before = File.ReadAllBytes(path);
        var (header, _) = SealedObject.InspectHeader(new MemoryStream(before));

        SealedObjectInfo rewrapped;
        using (var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
        {
            rewrapped = SealedObject.Rewrap(file, TestKms.Provider, newKey);
        }

        var after = File.ReadAllBytes(path);
        Assert.Equal(before.Length, after.Length);
        Assert.Equal(before[..header.Immutable.Length], after[..header.Immutable.Length]);   // AAD part
        Assert.Equal(before[header.HeaderSize..], after[header.HeaderSize..]);               // every chunk
        Assert.NotEqual(before[header.Immutable.Length..header.HeaderSize], after[header.Immutable.Length..header.HeaderSize]);
        Assert.Equal(newKey, rewrapped.KmsKeyArn);
        Assert.Equal(newKey, Inspect(path).KmsKeyArn);
        TestKms.Disable(oldKey);
        try
        {
            Assert.Equal(plaintext, OpenAndReadAll(path));
        }
        finally
        {
            TestKms.Enable(oldKey);
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(Chunk)]
    [InlineData((3 * Chunk) + 5)]
    public async Task SealAsync_reads_a_source_that_refuses_synchronous_IO_and_seals_what_Open_reads(int size)
    {
        var plaintext = Bytes.Random(size, 18);
        var path = _folder.File($"async-{size}.tdeo");

        SealedObjectInfo info;
        await using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
        {
            info = await SealedObject.SealAsync(new AsyncOnlyStream(plaintext), file, TestKms.Provider, SharedKey.Value, Context);
        }

        Assert.Equal(size, info.PlaintextLength);
        var chunks = size == 0 ? 1 : (size + Chunk - 1) / Chunk;   // a full last chunk is the final one: no empty chunk after it
        Assert.Equal(info.HeaderSize + size + (chunks * 16L), new FileInfo(path).Length);
        Assert.Equal(plaintext, OpenAndReadAll(path));
        Assert.Throws<InvalidOperationException>(() => SealedObject.Seal(new AsyncOnlyStream(plaintext), new MemoryStream(), TestKms.Provider, SharedKey.Value, Context));
    }

    [Fact]
    public void RewrapFile_replaces_the_object_whole_and_leaves_no_temporary_file()
    {
        var oldKey = TestKms.CreateKey("rewrap-file old");
        var newKey = TestKms.CreateKey("rewrap-file new");
        var plaintext = Bytes.Random((2 * Chunk) + 7, 16);
        var path = SealFile(plaintext, kmsKeyId: oldKey);
        var before = File.ReadAllBytes(path);
        var (header, _) = SealedObject.InspectHeader(new MemoryStream(before));
        var folder = Path.GetDirectoryName(path)!;
        var filesBefore = Directory.GetFiles(folder).Order().ToArray();

        var rewrapped = SealedObject.RewrapFile(path, TestKms.Provider, newKey);

        var after = File.ReadAllBytes(path);
        Assert.Equal(before[header.HeaderSize..], after[header.HeaderSize..]);   // chunks copied, not re-encrypted
        Assert.Equal(newKey, rewrapped.KmsKeyArn);
        Assert.Equal(newKey, Inspect(path).KmsKeyArn);
        Assert.Equal(filesBefore, Directory.GetFiles(folder).Order().ToArray());
        TestKms.Disable(oldKey);
        try
        {
            Assert.Equal(plaintext, OpenAndReadAll(path));
        }
        finally
        {
            TestKms.Enable(oldKey);
        }
    }

    [Fact]
    public void RewrapFile_refused_by_the_KMS_leaves_the_object_and_the_folder_as_they_were()
    {
        var target = TestKms.CreateKey("rewrap-file disabled target");
        var path = SealFile(Bytes.Random(500, 17));
        var before = File.ReadAllBytes(path);
        var folder = Path.GetDirectoryName(path)!;
        var filesBefore = Directory.GetFiles(folder).Order().ToArray();
        TestKms.Disable(target);
        try
        {
            var e = Assert.Throws<KmsException>(() => SealedObject.RewrapFile(path, TestKms.Provider, target));
            Assert.Equal("Rejected.Disabled", e.Code);
        }
        finally
        {
            TestKms.Enable(target);
        }

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(filesBefore, Directory.GetFiles(folder).Order().ToArray());
    }

    [Fact]
    public void Rewrap_refuses_an_envelope_that_does_not_fit_and_leaves_the_object_unchanged()
    {
        var path = SealFile(Bytes.Random(100, 15));
        var before = File.ReadAllBytes(path);

        using (var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
        {
            var error = Assert.Throws<TdeStorageException>(() => SealedObject.Rewrap(file, new OversizedRewrapProvider(), "any-key"));
            Assert.Equal(TdeStorageException.Codes.InvalidParameter, error.Code);
        }

        Assert.Equal(before, File.ReadAllBytes(path));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(15)]
    [InlineData(16 * 1024 * 1024 + 1)]
    public void Seal_refuses_a_chunk_size_out_of_range_with_InvalidParameter(int chunkSize)
    {
        var error = Assert.Throws<TdeStorageException>(() =>
            SealedObject.Seal(new MemoryStream([1]), new MemoryStream(), TestKms.Provider, SharedKey.Value, Context, chunkSize));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, error.Code);
    }

    [Fact]
    public void A_negative_Position_is_an_argument_error_and_Seek_before_the_start_an_IOException_as_for_FileStream()
    {
        using var reader = SealedObject.Open(File.OpenRead(SealFile(Bytes.Random(100, 19))), TestKms.Provider, Context);

        Assert.Throws<ArgumentOutOfRangeException>(() => reader.Position = -1);
        Assert.Throws<IOException>(() => reader.Seek(-1, SeekOrigin.Begin));
        Assert.Equal(0, reader.Position);
    }

    [Fact]
    public void Open_disposes_the_source_unless_leaveOpen()
    {
        var bytes = File.ReadAllBytes(SealFile(Bytes.Random(10, 16)));
        var owned = new MemoryStream(bytes);
        var kept = new MemoryStream(bytes);

        SealedObject.Open(owned, TestKms.Provider, Context).Dispose();
        SealedObject.Open(kept, TestKms.Provider, Context, leaveOpen: true).Dispose();

        Assert.False(owned.CanRead);
        Assert.True(kept.CanRead);
    }

    private string SealFile(byte[] plaintext, string? path = null, int chunkSize = Chunk, string? kmsKeyId = null, string? name = null)
    {
        path ??= _folder.File(name ?? Guid.NewGuid().ToString("N") + ".obj");
        using var file = File.Create(path);
        SealedObject.Seal(new MemoryStream(plaintext), file, TestKms.Provider, kmsKeyId ?? SharedKey.Value, Context, chunkSize);
        return path;
    }

    private static SealedObjectInfo Inspect(string path)
    {
        using var file = File.OpenRead(path);
        return SealedObject.Inspect(file);
    }

    private static byte[] OpenAndReadAll(string path)
    {
        using var file = File.OpenRead(path);
        using var reader = SealedObject.Open(file, TestKms.Provider, Context, leaveOpen: true);
        return Bytes.ReadAll(reader);
    }

    private static void FlipByte(string path, long offset, byte mask = 0x01)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        file.Position = offset;
        var b = file.ReadByte();
        file.Position = offset;
        file.WriteByte((byte)(b ^ mask));
    }

    private static int ReadFully(Stream stream, byte[] buffer)
    {
        var total = 0;
        int n;
        while (total < buffer.Length && (n = stream.Read(buffer, total, buffer.Length - total)) > 0)
        {
            total += n;
        }

        return total;
    }

    private sealed class OversizedRewrapProvider : IDataKeyProvider
    {
        public NewDataKey GenerateDataKey(string kmsKeyId, EncryptionContext context) => throw new NotSupportedException();

        public SecretBuffer Decrypt(byte[] wrapped, EncryptionContext context) => throw new NotSupportedException();

        public RewrappedDataKey ReEncrypt(byte[] wrapped, EncryptionContext context, string destinationKeyId) =>
            new("acs:kms:cn-hangzhou:1:key/" + new string('k', 100), new byte[2000]);
    }
}
