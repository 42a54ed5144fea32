using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Secrets;
using TdeEngine.Storage.Keys;

namespace TdeEngine.Objects.Tests;

/// <summary>A temp folder, deleted after the test.</summary>
public sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "tde-objects-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Counts the calls that reach the KMS.</summary>
public sealed class CountingKeyProvider(IDataKeyProvider inner) : IDataKeyProvider
{
    public int GenerateCalls { get; private set; }

    public int DecryptCalls { get; private set; }

    public int ReEncryptCalls { get; private set; }

    public int Calls => GenerateCalls + DecryptCalls + ReEncryptCalls;

    public NewDataKey GenerateDataKey(string kmsKeyId, EncryptionContext context)
    {
        GenerateCalls++;
        return inner.GenerateDataKey(kmsKeyId, context);
    }

    public SecretBuffer Decrypt(byte[] wrapped, EncryptionContext context)
    {
        DecryptCalls++;
        return inner.Decrypt(wrapped, context);
    }

    public RewrappedDataKey ReEncrypt(byte[] wrapped, EncryptionContext context, string destinationKeyId)
    {
        ReEncryptCalls++;
        return inner.ReEncrypt(wrapped, context, destinationKeyId);
    }
}

/// <summary>A stream that hides its ability to seek (a network stream, a pipe).</summary>
public sealed class NonSeekableStream(Stream inner) : Stream
{
    public override bool CanRead => inner.CanRead;

    public override bool CanSeek => false;

    public override bool CanWrite => inner.CanWrite;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush() => inner.Flush();

    // Returns short reads on purpose, as sockets do.
    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, Math.Min(count, 7919));

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
}

/// <summary>Gives <c>failAfter</c> bytes of pattern, then throws, like a dropped upload.</summary>
public sealed class FailingStream(long failAfter) : Stream
{
    private long _position;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count)
    {
        if (_position >= failAfter)
        {
            throw new IOException("The client disconnected.");
        }

        var n = (int)Math.Min(count, failAfter - _position);
        buffer.AsSpan(offset, n).Fill(0x41);
        _position += n;
        return n;
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

public static class Bytes
{
    public static byte[] Random(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    public static byte[] ReadAll(Stream stream)
    {
        var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    public static bool Contains(byte[] haystack, ReadOnlySpan<byte> needle) => haystack.AsSpan().IndexOf(needle) >= 0;
}

/// <summary>
/// A source that refuses synchronous reads, as an ASP.NET Core request body does by default
/// (AllowSynchronousIO = false), and hands out small pieces; it can cancel a token after a number of reads.
/// </summary>
public sealed class AsyncOnlyStream(byte[] content, CancellationTokenSource? cancelAfter = null, int cancelAfterReads = int.MaxValue) : Stream
{
    private int _position;
    private int _reads;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) =>
        throw new InvalidOperationException("Synchronous operations are disallowed. Call ReadAsync or set AllowSynchronousIO to true instead.");

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await Task.Yield();
        if (++_reads > cancelAfterReads)
        {
            await cancelAfter!.CancelAsync();
        }

        cancellationToken.ThrowIfCancellationRequested();
        var n = Math.Min(Math.Min(buffer.Length, 5003), content.Length - _position);
        content.AsSpan(_position, n).CopyTo(buffer.Span);
        _position += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>Runs <paramref name="onReEncrypt"/> inside each ReEncrypt call, before the inner provider's, to open a race window.</summary>
public sealed class ReEncryptHook(IDataKeyProvider inner, Action onReEncrypt) : IDataKeyProvider
{
    public NewDataKey GenerateDataKey(string kmsKeyId, EncryptionContext context) => inner.GenerateDataKey(kmsKeyId, context);

    public SecretBuffer Decrypt(byte[] wrapped, EncryptionContext context) => inner.Decrypt(wrapped, context);

    public RewrappedDataKey ReEncrypt(byte[] wrapped, EncryptionContext context, string destinationKeyId)
    {
        onReEncrypt();
        return inner.ReEncrypt(wrapped, context, destinationKeyId);
    }
}
