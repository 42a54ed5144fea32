using System.Security.Cryptography;
using System.Text;
using TdeEngine.Kms.Errors;
using TdeEngine.Storage.Errors;

namespace TdeEngine.Objects.Tests;

public sealed class LocalBucketTests : IDisposable
{
    private readonly TempFolder _root = new();
    private readonly string _bucketDirectory;

    public LocalBucketTests() => _bucketDirectory = _root.File("photos");

    public void Dispose() => _root.Dispose();

    [Fact]
    public void A_new_bucket_defaults_to_AES256_under_the_OSS_service_key()
    {
        var bucket = CreateBucket();

        var metadata = bucket.PutObject("a.txt", Text("hello"));

        Assert.Equal(new BucketEncryption("AES256", null), bucket.Encryption);
        Assert.Equal("AES256", metadata.ServerSideEncryption);
        Assert.Equal(TestKms.ServiceKeyArn(), metadata.KmsKeyId);
        Assert.EndsWith(":key/" + TestKms.Kms.DescribeKey(TestKms.Caller, "alias/acs/oss").KeyId, metadata.KmsKeyId, StringComparison.Ordinal);
        Assert.Equal(metadata.KmsKeyId, SealedObject.Inspect(new MemoryStream(File.ReadAllBytes(bucket.PathOf("a.txt")))).KmsKeyArn);
        Assert.Equal("hello", ReadText(bucket.GetObject("a.txt")));
    }

    [Fact]
    public void PutBucketEncryption_KMS_with_a_CMK_seals_new_objects_under_it_and_request_headers_override_it()
    {
        var cmk = TestKms.CreateKey("bucket default");
        var other = TestKms.CreateKey("per request");
        var bucket = CreateBucket();
        var before = bucket.PutObject("before.txt", Text("old default"));

        bucket.PutBucketEncryption("KMS", cmk);
        var byDefault = bucket.PutObject("a.txt", Text("a"));
        var byRequest = bucket.PutObject("b.txt", Text("b"), "KMS", other);
        var byRequestServiceKey = bucket.PutObject("c.txt", Text("c"), "KMS");
        var byRequestAes = bucket.PutObject("d.txt", Text("d"), "AES256");

        Assert.Equal(new BucketEncryption("KMS", cmk), bucket.Encryption);
        Assert.Equal(("KMS", cmk), (byDefault.ServerSideEncryption, byDefault.KmsKeyId));
        Assert.Equal(("KMS", other), (byRequest.ServerSideEncryption, byRequest.KmsKeyId));
        Assert.Equal(("KMS", TestKms.ServiceKeyArn()), (byRequestServiceKey.ServerSideEncryption, byRequestServiceKey.KmsKeyId));
        Assert.Equal(("AES256", TestKms.ServiceKeyArn()), (byRequestAes.ServerSideEncryption, byRequestAes.KmsKeyId));
        Assert.Equal(("AES256", TestKms.ServiceKeyArn()), (bucket.HeadObject("before.txt").ServerSideEncryption, bucket.HeadObject("before.txt").KmsKeyId));
        Assert.Equal(before.ETag, bucket.HeadObject("before.txt").ETag);
        Assert.Equal("b", ReadText(bucket.GetObject("b.txt")));
    }

    [Fact]
    public void PutBucketEncryption_KMS_without_a_key_uses_the_service_key()
    {
        var bucket = CreateBucket();

        bucket.PutBucketEncryption("KMS");
        var metadata = bucket.PutObject("a.txt", Text("a"));

        Assert.Equal(("KMS", TestKms.ServiceKeyArn()), (metadata.ServerSideEncryption, metadata.KmsKeyId));
    }

    [Theory]
    [InlineData("SM4")]
    [InlineData("aes256")]
    [InlineData("")]
    public void An_unknown_algorithm_fails_with_InvalidEncryptionAlgorithmError(string algorithm)
    {
        var bucket = CreateBucket();

        var onBucket = Assert.Throws<TdeStorageException>(() => bucket.PutBucketEncryption(algorithm));
        var onRequest = Assert.Throws<TdeStorageException>(() => bucket.PutObject("a.txt", Text("a"), algorithm));

        Assert.Equal("InvalidEncryptionAlgorithmError", onBucket.Code);
        Assert.Equal("InvalidEncryptionAlgorithmError", onRequest.Code);
        Assert.Equal(new BucketEncryption("AES256", null), LocalBucket.Open(_bucketDirectory, TestKms.Provider).Encryption);
        Assert.False(File.Exists(bucket.PathOf("a.txt")));
    }

    [Fact]
    public void A_key_id_with_AES256_or_without_an_algorithm_is_InvalidParameter()
    {
        var bucket = CreateBucket();

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, Assert.Throws<TdeStorageException>(() => bucket.PutBucketEncryption("AES256", "key-1")).Code);
        Assert.Equal(TdeStorageException.Codes.InvalidParameter, Assert.Throws<TdeStorageException>(() => bucket.PutObject("a", Text("a"), "AES256", "key-1")).Code);
        Assert.Equal(TdeStorageException.Codes.InvalidParameter, Assert.Throws<TdeStorageException>(() => bucket.PutObject("a", Text("a"), null, "key-1")).Code);
    }

    [Fact]
    public void RewrapObject_moves_a_KMS_object_to_another_CMK_and_keeps_its_ETag_and_content()
    {
        var bucket = CreateBucket();
        var oldKey = TestKms.CreateKey("bucket rewrap old");
        var newKey = TestKms.CreateKey("bucket rewrap new");
        var content = Bytes.Random(70_000, 21);
        var put = bucket.PutObject("k.bin", new MemoryStream(content), "KMS", oldKey);

        var after = bucket.RewrapObject("k.bin", newKey);

        Assert.Equal(newKey, after.KmsKeyId);
        Assert.Equal("KMS", after.ServerSideEncryption);
        Assert.Equal(put.ETag, after.ETag);
        TestKms.Disable(oldKey);
        try
        {
            using var read = bucket.GetObject("k.bin");
            var back = new MemoryStream();
            read.CopyTo(back);
            Assert.Equal(content, back.ToArray());
        }
        finally
        {
            TestKms.Enable(oldKey);
        }
    }

    [Theory]
    [InlineData("put")]
    [InlineData("delete")]
    public async Task A_PutObject_or_DeleteObject_during_a_RewrapObject_is_not_undone_by_it(string concurrent)
    {
        var newKey = TestKms.CreateKey("rewrap race");
        Task? other = null;
        LocalBucket? bucket = null;
        var provider = new ReEncryptHook(TestKms.Provider, () =>
        {
            // While the re-wrap holds its copy of version 1, another writer changes the name.
            other = Task.Run(() =>
            {
                if (concurrent == "put")
                {
                    bucket!.PutObject("k.txt", Text("version 2"), "KMS");
                }
                else
                {
                    bucket!.DeleteObject("k.txt");
                }
            });
            Thread.Sleep(300);   // long enough for it to reach the rename (or the delete) before the re-wrap's rename
        });
        bucket = LocalBucket.Create(_bucketDirectory, "photos", provider, TestKms.RegionId, TestKms.AccountId);
        bucket.PutObject("k.txt", Text("version 1"), "KMS");

        bucket.RewrapObject("k.txt", newKey);
        await other!;

        if (concurrent == "put")
        {
            Assert.Equal("version 2", ReadText(bucket.GetObject("k.txt")));
        }
        else
        {
            Assert.Equal("NoSuchKey", Assert.Throws<TdeStorageException>(() => bucket.HeadObject("k.txt")).Code);
        }
    }

    [Fact]
    public void ListObjects_skips_a_stray_file_and_a_damaged_object_and_HeadObject_names_them()
    {
        var bucket = CreateBucket();
        bucket.PutObject("good.txt", Text("good"));
        bucket.PutObject("damaged.txt", Text("damaged"));
        File.WriteAllText(Path.Combine(_bucketDirectory, "README"), "dropped here by hand");
        using (var file = new FileStream(bucket.PathOf("damaged.txt"), FileMode.Open))
        {
            file.Position = 20;   // inside the header, after the magic
            file.Write(new byte[64]);
        }

        var listed = bucket.ListObjects();

        Assert.Equal(["good.txt"], listed.Select(o => o.Key));
        Assert.Equal(TdeStorageException.Codes.NotSealedObject, Assert.Throws<TdeStorageException>(() => bucket.HeadObject("README")).Code);
        Assert.Equal(TdeStorageException.Codes.EnvelopeDamaged, Assert.Throws<TdeStorageException>(() => bucket.HeadObject("damaged.txt")).Code);
    }

    [Fact]
    public void RewrapObject_keeps_an_AES256_object_under_the_OSS_key_and_refuses_a_missing_one()
    {
        var bucket = CreateBucket();
        bucket.PutObject("managed.txt", Text("under the OSS-managed key"));
        var before = File.ReadAllBytes(bucket.PathOf("managed.txt"));

        var e = Assert.Throws<TdeStorageException>(() => bucket.RewrapObject("managed.txt", TestKms.CreateKey("not for AES256")));
        var again = bucket.RewrapObject("managed.txt", "alias/acs/oss");
        var missing = Assert.Throws<TdeStorageException>(() => bucket.RewrapObject("absent.txt", "alias/acs/oss"));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, e.Code);
        Assert.Contains("upload it again with x-oss-server-side-encryption KMS", e.Message, StringComparison.Ordinal);
        Assert.Equal("AES256", again.ServerSideEncryption);
        Assert.Equal(TdeStorageException.Codes.NoSuchKey, missing.Code);
        Assert.Equal(before.AsSpan(1024).ToArray(), File.ReadAllBytes(bucket.PathOf("managed.txt")).AsSpan(1024).ToArray());   // chunks untouched
    }

    [Fact]
    public void HeadObject_ListObjects_and_DeleteObject_behave_like_OSS()
    {
        var bucket = CreateBucket();
        bucket.PutObject("docs/b.txt", Text("bbbb"));
        bucket.PutObject("docs/a.txt", Text("aa"));
        bucket.PutObject("img/c.png", new MemoryStream(Bytes.Random(70_000, 1)));

        var docs = bucket.ListObjects("docs/");
        var all = bucket.ListObjects();
        var head = bucket.HeadObject("img/c.png");
        bucket.DeleteObject("docs/a.txt");
        bucket.DeleteObject("docs/a.txt");            // a missing key is not an error
        bucket.DeleteObject("never-existed");

        Assert.Equal(["docs/a.txt", "docs/b.txt"], docs.Select(o => o.Key));
        Assert.Equal([2L, 4L], docs.Select(o => o.Size));
        Assert.Equal(["docs/a.txt", "docs/b.txt", "img/c.png"], all.Select(o => o.Key));
        Assert.Equal(70_000, head.Size);
        Assert.Matches("^[0-9A-F]{32}$", head.ETag);
        Assert.InRange(head.LastModified, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddMinutes(1));
        Assert.Equal(["docs/b.txt", "img/c.png"], bucket.ListObjects().Select(o => o.Key));
        Assert.False(File.Exists(bucket.PathOf("docs/a.txt")));
        Assert.Equal("NoSuchKey", Assert.Throws<TdeStorageException>(() => bucket.HeadObject("docs/a.txt")).Code);
        Assert.Equal("NoSuchKey", Assert.Throws<TdeStorageException>(() => bucket.GetObject("docs/a.txt")).Code);
    }

    [Fact]
    public void HeadObject_and_ListObjects_make_no_KMS_call_and_work_while_the_key_is_disabled()
    {
        var cmk = TestKms.CreateKey("head test");
        CreateBucket().PutObject("a.txt", Text("secret"), "KMS", cmk);
        var keys = new CountingKeyProvider(TestKms.Provider);
        var bucket = LocalBucket.Open(_bucketDirectory, keys);
        TestKms.Disable(cmk);
        try
        {
            var head = bucket.HeadObject("a.txt");
            var list = bucket.ListObjects();
            Assert.Equal(0, keys.Calls);

            var error = Assert.Throws<KmsException>(() => bucket.GetObject("a.txt"));

            Assert.Equal("Rejected.Disabled", error.Code);
            Assert.Equal((6L, "KMS", cmk), (head.Size, head.ServerSideEncryption, head.KmsKeyId));
            Assert.Single(list);
        }
        finally
        {
            TestKms.Enable(cmk);
        }

        Assert.Equal("secret", ReadText(bucket.GetObject("a.txt")));
    }

    [Theory]
    [InlineData("")]
    [InlineData("/etc/passwd")]
    [InlineData("\\windows")]
    [InlineData("a\nb")]
    [InlineData("tab\there")]
    [InlineData("nul\0")]
    public void Names_OSS_refuses_fail_with_InvalidObjectName(string key)
    {
        var bucket = CreateBucket();

        var error = Assert.Throws<TdeStorageException>(() => bucket.PutObject(key, Text("x")));

        Assert.Equal("InvalidObjectName", error.Code);
        Assert.Equal([Path.Combine(_bucketDirectory, ".tde-bucket.json")], Directory.GetFileSystemEntries(_bucketDirectory));
    }

    [Fact]
    public void Names_too_long_for_OSS_or_for_a_file_name_fail_with_InvalidObjectName()
    {
        var bucket = CreateBucket();

        Assert.Equal("InvalidObjectName", Assert.Throws<TdeStorageException>(() => bucket.PutObject(new string('a', 1024), Text("x"))).Code);
        Assert.Equal("InvalidObjectName", Assert.Throws<TdeStorageException>(() => bucket.PutObject(new string('é', 50), Text("x"))).Code);
        Assert.Equal("InvalidObjectName", Assert.Throws<TdeStorageException>(() => bucket.HeadObject("bad\u0001")).Code);
        bucket.PutObject(new string('a', 255), Text("longest"));
        Assert.Equal("longest", ReadText(bucket.GetObject(new string('a', 255))));
    }

    [Theory]
    [InlineData("../etc/passwd")]
    [InlineData("..")]
    [InlineData(".")]
    [InlineData("../../escape")]
    [InlineData("a/../../b")]
    [InlineData(".tde-bucket.json")]
    [InlineData("..\\..\\win")]
    public void Traversal_names_stay_inside_the_bucket_directory(string key)
    {
        var bucket = CreateBucket();
        var outsideBefore = Directory.GetFileSystemEntries(_root.Path);

        bucket.PutObject(key, Text("inside"));

        Assert.Equal(outsideBefore, Directory.GetFileSystemEntries(_root.Path));   // nothing new next to the bucket
        Assert.Equal(_bucketDirectory, Path.GetDirectoryName(bucket.PathOf(key)));
        Assert.Single(Directory.GetFiles(_bucketDirectory), f => !Path.GetFileName(f).StartsWith('.'));   // one object file; the rest are the bucket's own dot files
        Assert.Equal("inside", ReadText(bucket.GetObject(key)));
        Assert.Equal([key], LocalBucket.Open(_bucketDirectory, TestKms.Provider).ListObjects().Select(o => o.Key));
    }

    [Fact]
    public void An_object_file_copied_under_another_name_does_not_open()
    {
        var bucket = CreateBucket();
        bucket.PutObject("a.txt", Text("for a only"));
        File.Copy(bucket.PathOf("a.txt"), bucket.PathOf("b.txt"));

        var error = Assert.Throws<TdeStorageException>(() => bucket.GetObject("b.txt"));
        var head = Assert.Throws<TdeStorageException>(() => bucket.HeadObject("b.txt"));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, error.Code);
        Assert.Contains("photos/a.txt", error.Message, StringComparison.Ordinal);
        Assert.Equal(TdeStorageException.Codes.InvalidParameter, head.Code);   // its size and ETag are not b.txt's
        Assert.Equal(["a.txt"], bucket.ListObjects().Select(o => o.Key));
    }

    [Fact]
    public void An_object_copied_into_another_bucket_does_not_open()
    {
        var bucket = CreateBucket();
        var other = LocalBucket.Create(_root.File("other"), "other", TestKms.Provider, TestKms.RegionId, TestKms.AccountId);
        bucket.PutObject("a.txt", Text("photos only"));
        File.Copy(bucket.PathOf("a.txt"), other.PathOf("a.txt"));

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, Assert.Throws<TdeStorageException>(() => other.GetObject("a.txt")).Code);
    }

    [Fact]
    public void Editing_the_context_in_the_header_is_refused()
    {
        var bucket = CreateBucket();
        bucket.PutObject("a.txt", Text("for a only"));
        bucket.PutObject("x.txt", Text("x"));
        File.Copy(bucket.PathOf("a.txt"), bucket.PathOf("b.txt"));

        // The copy claims to be b.txt: the header now matches, but the KMS refuses the data key.
        ReplaceInHeader(bucket.PathOf("b.txt"), "photos/a.txt", "photos/b.txt");
        var kmsError = Assert.Throws<KmsException>(() => bucket.GetObject("b.txt"));
        // x.txt's own header names another object: refused before the KMS.
        ReplaceInHeader(bucket.PathOf("x.txt"), "photos/x.txt", "photos/y.txt");
        var headerError = Assert.Throws<TdeStorageException>(() => bucket.GetObject("x.txt"));

        Assert.Equal("InvalidCiphertext", kmsError.Code);
        Assert.Equal(TdeStorageException.Codes.InvalidParameter, headerError.Code);
        Assert.Equal("for a only", ReadText(bucket.GetObject("a.txt")));
    }

    [Fact]
    public void GetObject_with_a_range_follows_OSS_Range_semantics()
    {
        var bucket = CreateBucket();
        var content = Bytes.Random(200_000, 2);
        bucket.PutObject("big.bin", new MemoryStream(content));

        using (var range = bucket.GetObject("big.bin", 65_530, 131_080))
        {
            Assert.Equal(131_080 - 65_530 + 1, range.Length);
            Assert.Equal(content[65_530..131_081], Bytes.ReadAll(range));
            range.Position = 10;
            Assert.Equal(content[65_540], (byte)range.ReadByte());
        }

        using (var tail = bucket.GetObject("big.bin", 199_990, 10_000_000))
        {
            Assert.Equal(content[199_990..], Bytes.ReadAll(tail));   // the end is cut to the last byte
        }

        using (var single = bucket.GetObject("big.bin", 0, 0))
        {
            Assert.Equal(content[..1], Bytes.ReadAll(single));
        }

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, Assert.Throws<TdeStorageException>(() => bucket.GetObject("big.bin", 200_000, 200_001)).Code);
        Assert.Equal(TdeStorageException.Codes.InvalidParameter, Assert.Throws<TdeStorageException>(() => bucket.GetObject("big.bin", 10, 9)).Code);
        Assert.Equal(TdeStorageException.Codes.InvalidParameter, Assert.Throws<TdeStorageException>(() => bucket.GetObject("big.bin", -1, 9)).Code);
    }

    [Fact]
    public void A_reopened_bucket_keeps_its_settings_and_reads_its_objects_back()
    {
        var cmk = TestKms.CreateKey("reopen");
        var content = Bytes.Random(150_000, 3);
        var bucket = CreateBucket();
        bucket.PutBucketEncryption("KMS", cmk);
        var put = bucket.PutObject("data/1.bin", new MemoryStream(content));

        var reopened = LocalBucket.Open(_bucketDirectory, TestKms.Provider);

        Assert.Equal("photos", reopened.Name);
        Assert.Equal(new BucketEncryption("KMS", cmk), reopened.Encryption);
        Assert.Equal(put, reopened.HeadObject("data/1.bin"));
        using var stream = reopened.GetObject("data/1.bin");
        Assert.Equal(content, Bytes.ReadAll(stream));
        var config = File.ReadAllText(Path.Combine(_bucketDirectory, ".tde-bucket.json"));
        Assert.Contains("\"sseAlgorithm\": \"KMS\"", config, StringComparison.Ordinal);
        Assert.Contains(cmk, config, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_removes_temporary_files_a_crash_left_a_day_ago_and_keeps_recent_ones()
    {
        CreateBucket().PutObject("a.txt", Text("a"));
        var stale = Path.Combine(_bucketDirectory, ".tde-tmp-0123456789abcdef0123456789abcdef");
        var recent = Path.Combine(_bucketDirectory, ".tde-tmp-rewrap-00aa11bb22cc33dd");
        File.WriteAllText(stale, "half an object");
        File.WriteAllText(recent, "a write in flight");
        File.SetLastWriteTimeUtc(stale, DateTime.UtcNow - TimeSpan.FromHours(25));

        var reopened = LocalBucket.Open(_bucketDirectory, TestKms.Provider);

        Assert.False(File.Exists(stale));
        Assert.True(File.Exists(recent));
        Assert.Equal(["a.txt"], reopened.ListObjects().Select(o => o.Key));
    }

    [Fact]
    public void Open_of_a_directory_without_a_bucket_fails_with_NoSuchBucket()
    {
        Assert.Equal("NoSuchBucket", Assert.Throws<TdeStorageException>(() => LocalBucket.Open(_root.File("missing"), TestKms.Provider)).Code);
        Assert.Equal("NoSuchBucket", Assert.Throws<TdeStorageException>(() => LocalBucket.Open(_root.Path, TestKms.Provider)).Code);
    }

    [Fact]
    public void Create_refuses_an_invalid_bucket_name_and_an_existing_bucket()
    {
        CreateBucket();

        Assert.Equal(TdeStorageException.Codes.InvalidParameter, Assert.Throws<TdeStorageException>(() =>
            LocalBucket.Create(_root.File("x"), "Bad_Name", TestKms.Provider, TestKms.RegionId, TestKms.AccountId)).Code);
        Assert.Equal(TdeStorageException.Codes.InvalidParameter, Assert.Throws<TdeStorageException>(() =>
            LocalBucket.Create(_bucketDirectory, "photos", TestKms.Provider, TestKms.RegionId, TestKms.AccountId)).Code);
    }

    [Fact]
    public void A_PutObject_whose_source_fails_midway_leaves_no_object_and_no_temp_file()
    {
        var bucket = CreateBucket();
        bucket.PutObject("kept.txt", Text("version 1"));
        var filesBefore = Directory.GetFiles(_bucketDirectory).Order(StringComparer.Ordinal).ToArray();

        Assert.Throws<IOException>(() => bucket.PutObject("new.bin", new FailingStream(300_000)));
        Assert.Throws<IOException>(() => bucket.PutObject("kept.txt", new FailingStream(100_000)));

        Assert.Equal(filesBefore, Directory.GetFiles(_bucketDirectory).Order(StringComparer.Ordinal));
        Assert.Equal("NoSuchKey", Assert.Throws<TdeStorageException>(() => bucket.HeadObject("new.bin")).Code);
        Assert.Equal("version 1", ReadText(bucket.GetObject("kept.txt")));
    }

    [Fact]
    public async Task PutObjectAsync_takes_a_source_that_refuses_synchronous_IO()
    {
        var bucket = CreateBucket();
        var content = Bytes.Random(200_000, 22);

        var put = await bucket.PutObjectAsync("upload.bin", new AsyncOnlyStream(content), "KMS");

        Assert.Equal(content.Length, put.Size);
        using var read = bucket.GetObject("upload.bin");
        var back = new MemoryStream();
        await read.CopyToAsync(back);
        Assert.Equal(content, back.ToArray());
    }

    [Fact]
    public async Task A_cancelled_PutObjectAsync_leaves_no_object_and_no_temp_file()
    {
        var bucket = CreateBucket();
        bucket.PutObject("kept.txt", Text("version 1"));
        var filesBefore = Directory.GetFiles(_bucketDirectory).Order(StringComparer.Ordinal).ToArray();
        using var cancel = new CancellationTokenSource();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            bucket.PutObjectAsync("kept.txt", new AsyncOnlyStream(Bytes.Random(300_000, 23), cancel, cancelAfterReads: 20), cancellationToken: cancel.Token));

        Assert.Equal(filesBefore, Directory.GetFiles(_bucketDirectory).Order(StringComparer.Ordinal));
        Assert.Equal("version 1", ReadText(bucket.GetObject("kept.txt")));
    }

    [Fact]
    public void Object_files_hold_no_plaintext_and_ETags_are_not_the_content_MD5()
    {
        var bucket = CreateBucket();
        var content = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("CONFIDENTIAL-PAYROLL-RECORD;", 4000)));

        var first = bucket.PutObject("one.csv", new MemoryStream(content));
        var second = bucket.PutObject("two.csv", new NonSeekableStream(new MemoryStream(content)));

        var md5 = Convert.ToHexString(MD5.HashData(content));
        Assert.NotEqual(first.ETag, second.ETag);
        Assert.NotEqual(md5, first.ETag);
        foreach (var key in new[] { "one.csv", "two.csv" })
        {
            var onDisk = File.ReadAllBytes(bucket.PathOf(key));
            Assert.False(Bytes.Contains(onDisk, "CONFIDENTIAL"u8));
            Assert.False(Bytes.Contains(onDisk, Encoding.ASCII.GetBytes(md5)));
            Assert.False(Bytes.Contains(onDisk, MD5.HashData(content)));
        }

        Assert.NotEqual(File.ReadAllBytes(bucket.PathOf("one.csv"))[2048..4096], File.ReadAllBytes(bucket.PathOf("two.csv"))[2048..4096]);
        Assert.Equal(content.Length, first.Size);
    }

    private LocalBucket CreateBucket() =>
        LocalBucket.Create(_bucketDirectory, "photos", TestKms.Provider, TestKms.RegionId, TestKms.AccountId);

    private static MemoryStream Text(string s) => new(Encoding.UTF8.GetBytes(s));

    private static string ReadText(Stream stream)
    {
        using (stream)
        {
            return Encoding.UTF8.GetString(Bytes.ReadAll(stream));
        }
    }

    private static void ReplaceInHeader(string path, string from, string to)
    {
        var bytes = File.ReadAllBytes(path);
        var at = bytes.AsSpan(0, 1024).IndexOf(Encoding.UTF8.GetBytes(from));
        Assert.True(at > 0);
        Encoding.UTF8.GetBytes(to).CopyTo(bytes, at);
        File.WriteAllBytes(path, bytes);
    }
}
