using System.Security.Cryptography;
using TdeEngine.Kms.Crypto;

namespace TdeEngine.Kms.Tests.Crypto;

public class FastRandomTests
{
    [Fact]
    public void Outputs_do_not_repeat_across_calls_blocks_and_threads()
    {
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<string, bool>();
        Parallel.For(0, 4, _ =>
        {
            var value = new byte[32];
            for (var i = 0; i < 1000; i++)   // 1000 x 32 bytes spans several 4 KiB blocks per thread
            {
                FastRandom.Fill(value);
                Assert.True(seen.TryAdd(Convert.ToHexString(value), true));
            }
        });

        Assert.Equal(4000, seen.Count);
    }

    [Fact]
    public void Large_requests_are_filled_completely_and_look_uniform()
    {
        var buffer = new byte[100_000];

        FastRandom.Fill(buffer);

        var counts = new int[256];
        foreach (var b in buffer)
        {
            counts[b]++;
        }

        // Each byte value is expected ~390 times; a chi-square over 255 degrees of freedom stays far below 400 for uniform data.
        var expected = buffer.Length / 256.0;
        var chiSquare = counts.Sum(c => (c - expected) * (c - expected) / expected);
        Assert.InRange(chiSquare, 150, 400);
    }

    [Fact]
    public void The_keystream_is_AES_CTR_from_counter_2()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        var iv = RandomNumberGenerator.GetBytes(12);
        var keystream = new byte[48];

        Aes256GcmOneShot.Keystream(key, iv, keystream);

        using var aes = Aes.Create();
        aes.Key = key;
        var blocks = new byte[48];
        for (var i = 0; i < 3; i++)
        {
            iv.CopyTo(blocks, i * 16);
            blocks[(i * 16) + 15] = (byte)(2 + i);
        }

        Assert.Equal(aes.EncryptEcb(blocks, PaddingMode.None), keystream);
    }
}
