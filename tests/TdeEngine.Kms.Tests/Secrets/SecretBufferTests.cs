using TdeEngine.Kms.Secrets;

namespace TdeEngine.Kms.Tests.Secrets;

public class SecretBufferTests
{
    [Fact]
    public void A_lease_keeps_the_bytes_valid_through_a_dispose_and_the_buffer_is_freed_after_it()
    {
        var buffer = SecretBuffer.CopyFrom([1, 2, 3, 4]);
        var lease = buffer.Use();

        buffer.Dispose();

        // Disposed for everyone else at once; the lease still reads the key, not wiped or freed memory.
        Assert.True(buffer.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => buffer.Span.Length);
        Assert.Throws<ObjectDisposedException>(() => { using var late = buffer.Use(); });
        Assert.Equal([1, 2, 3, 4], lease.Span.ToArray());
        lease.Dispose();
    }

    [Fact]
    public void A_dispose_on_another_thread_waits_for_no_one_and_frees_after_the_last_lease()
    {
        var buffer = SecretBuffer.CopyFrom([9, 8, 7]);
        byte[] seen;
        using (var lease = buffer.Use())
        {
            // Dispose returns at once (it only marks the handle); the memory stays until the lease ends.
            var disposer = new Thread(buffer.Dispose);
            disposer.Start();
            Assert.True(disposer.Join(TimeSpan.FromSeconds(10)));
            seen = lease.Span.ToArray();
        }

        Assert.Equal([9, 8, 7], seen);
        Assert.True(buffer.IsDisposed);
    }

    [Fact]
    public void Leases_nest_and_the_buffer_reads_the_same_bytes_through_each()
    {
        using var buffer = SecretBuffer.CopyFrom([5, 6]);
        using var first = buffer.Use();
        using var second = buffer.Use();

        second.Span[0] = 42;

        Assert.Equal([42, 6], first.Span.ToArray());
        Assert.Equal([42, 6], buffer.Span.ToArray());
    }
}
