using System.Security.Cryptography;
using TdeEngine.Disks.Tests.Infrastructure;
using TdeEngine.Disks.Xts;

namespace TdeEngine.Disks.Tests.Xts;

public sealed class XtsAes256Tests
{
    // IEEE 1619-2007 Annex B: XTS-AES-256, Key1 = e and Key2 = pi digits, 512-byte data units whose
    // plaintext is 00 01 .. ff 00 01 .. ff.
    private const string VectorKey =
        "2718281828459045235360287471352662497757247093699959574966967627" +
        "3141592653589793238462643383279502884197169399375105820974944592";

    private const string Vector10Ciphertext =
        "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b" +
        "5d31e276f8fe4a8d66b317f9ac683f44680a86ac35adfc3345befecb4bb188fd" +
        "5776926c49a3095eb108fd1098baec70aaa66999a72a82f27d848b21d4a741b0" +
        "c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca" +
        "2a3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0" +
        "b5781c34803fa75421c790dfe1de1834f280d7667b327f6c8cd7557e12ac3a0f" +
        "93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c50841473d1a8cc81ec" +
        "583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a" +
        "84e18e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1" +
        "505eb309326d68378f8374595c849d84f4c333ec4423885143cb47bd71c5edae" +
        "9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f6a975a44a0f90c29" +
        "a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac" +
        "6e333b93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f" +
        "645e8b7e9bfdef33943054ff84011493c27b3429eaedb4ed5376441a77ed4385" +
        "1ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7ab4066193c4caa" +
        "773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151";

    private const string Vector11Ciphertext =
        "77a31251618a15e6b92d1d66dffe7b50b50bad552305ba0217a610688eff7e11" +
        "e1d0225438e093242d6db274fde801d4cae06f2092c728b2478559df58e837c2" +
        "469ee4a4fa794e4bbc7f39bc026e3cb72c33b0888f25b4acf56a2a9804f1ce6d" +
        "3d6e1dc6ca181d4b546179d55544aa7760c40d06741539c7e3cd9d2f6650b201" +
        "3fd0eeb8c2b8e3d8d240ccae2d4c98320a7442e1c8d75a42d6e6cfa4c2eca179" +
        "8d158c7aecdf82490f24bb9b38e108bcda12c3faf9a21141c3613b58367f922a" +
        "aa26cd22f23d708dae699ad7cb40a8ad0b6e2784973dcb605684c08b8d6998c6" +
        "9aac049921871ebb65301a4619ca80ecb485a31d744223ce8ddc2394828d6a80" +
        "470c092f5ba413c3378fa6054255c6f9df4495862bbb3287681f931b687c888a" +
        "bf844dfc8fc28331e579928cd12bd2390ae123cf03818d14dedde5c0c24c8ab0" +
        "18bfca75ca096f2d531f3d1619e785f1ada437cab92e980558b3dce1474afb75" +
        "bfedbf8ff54cb2618e0244c9ac0d3c66fb51598cd2db11f9be39791abe447c63" +
        "094f7c453b7ff87cb5bb36b7c79efb0872d17058b83b15ab0866ad8a58656c5a" +
        "7e20dbdf308b2461d97c0ec0024a2715055249cf3b478ddd4740de654f75ca68" +
        "6e0d7345c69ed50cdc2a8b332b1f8824108ac937eb050585608ee734097fc090" +
        "54fbff89eeaeea791f4a7ab1f9868294a4f9e27b42af8100cb9d59cef9645803";

    public static TheoryData<string, ulong, string> Vectors => new()
    {
        { "Vector 10", 0xff, Vector10Ciphertext },
        { "Vector 11", 0xffff, Vector11Ciphertext },
    };

    private static byte[] VectorPlaintext()
    {
        var plaintext = new byte[512];
        for (var i = 0; i < plaintext.Length; i++)
        {
            plaintext[i] = (byte)i;
        }

        return plaintext;
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void EncryptSector_matches_the_IEEE_1619_known_answer(string vector, ulong dataUnit, string ciphertextHex)
    {
        using var xts = new XtsAes256(Convert.FromHexString(VectorKey));
        var output = new byte[512];

        xts.EncryptSector(dataUnit, VectorPlaintext(), output);

        Assert.True(ciphertextHex == Convert.ToHexStringLower(output), $"{vector} ciphertext differs");
    }

    [Theory]
    [MemberData(nameof(Vectors))]
    public void DecryptSector_in_place_inverts_the_IEEE_1619_known_answer(string vector, ulong dataUnit, string ciphertextHex)
    {
        using var xts = new XtsAes256(Convert.FromHexString(VectorKey));
        var sector = Convert.FromHexString(ciphertextHex);

        xts.DecryptSector(dataUnit, sector, sector);

        Assert.True(VectorPlaintext().AsSpan().SequenceEqual(sector), $"{vector} plaintext differs");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(15)]
    [InlineData(520)]
    public void A_data_unit_that_is_not_a_nonempty_multiple_of_16_bytes_is_refused(int length)
    {
        using var xts = new XtsAes256(RandomNumberGenerator.GetBytes(64));
        var data = new byte[length];

        Assert.Throws<ArgumentException>(() => xts.EncryptSector(0, data, data));
    }

    [Fact]
    public void The_same_plaintext_in_two_sectors_encrypts_differently()
    {
        using var xts = new XtsAes256(RandomNumberGenerator.GetBytes(64));
        var plaintext = new byte[4096];
        var a = new byte[4096];
        var b = new byte[4096];

        xts.EncryptSector(7, plaintext, a);
        xts.EncryptSector(8, plaintext, b);

        Assert.False(a.AsSpan().SequenceEqual(b));
        Assert.False(a.AsSpan(0, 16).SequenceEqual(a.AsSpan(16, 16)));   // and two blocks of one sector too
    }

    [Theory]
    [InlineData(512, 0UL, 1)]
    [InlineData(512, 1000UL, 37)]
    [InlineData(4096, 5UL, 64)]
    [InlineData(4096, ulong.MaxValue - 2, 5)]   // the unit numbers wrap past 2^64 - 1, as per-sector calls would
    public void A_run_of_sectors_at_once_gives_the_same_bytes_as_one_sector_at_a_time(int sectorSize, ulong first, int count)
    {
        using var xts = new XtsAes256(RandomNumberGenerator.GetBytes(64));
        var plaintext = RandomNumberGenerator.GetBytes(sectorSize * count);
        var expected = new byte[plaintext.Length];
        for (var i = 0; i < count; i++)
        {
            xts.EncryptSector(unchecked(first + (ulong)i), plaintext.AsSpan(i * sectorSize, sectorSize), expected.AsSpan(i * sectorSize, sectorSize));
        }

        var run = plaintext.ToArray();
        xts.EncryptSectors(first, sectorSize, run);
        Assert.Equal(expected, run);

        xts.DecryptSectors(first, sectorSize, run);
        Assert.Equal(plaintext, run);
    }

    [Fact]
    public void Sectors_match_Python_cryptography_for_random_keys_and_sector_numbers()
    {
        var random = new Random(1619);
        var cases = new List<(byte[] Key, ulong Sector, byte[] Plaintext)>();
        for (var i = 0; i < 24; i++)
        {
            var key = RandomNumberGenerator.GetBytes(64);
            var sector = i switch
            {
                0 => 0UL,
                1 => ulong.MaxValue,
                2 => 1UL << 63,
                _ => (ulong)random.NextInt64() ^ ((ulong)random.Next(2) << 63),
            };
            cases.Add((key, sector, DiskFolder.Pattern(i % 2 == 0 ? 4096 : 512, i)));
        }

        var input = string.Join('\n', cases.Select(c => $"{Convert.ToHexStringLower(c.Key)} {c.Sector} {Convert.ToHexStringLower(c.Plaintext)}"));
        var expected = Python.Run(PythonXts, input).Split('\n', StringSplitOptions.RemoveEmptyEntries);

        Assert.Equal(cases.Count, expected.Length);
        for (var i = 0; i < cases.Count; i++)
        {
            using var xts = new XtsAes256(cases[i].Key);
            var ciphertext = new byte[cases[i].Plaintext.Length];
            xts.EncryptSector(cases[i].Sector, cases[i].Plaintext, ciphertext);
            Assert.True(expected[i] == Convert.ToHexStringLower(ciphertext), $"case {i} (sector {cases[i].Sector}) differs from Python");
            xts.DecryptSector(cases[i].Sector, ciphertext, ciphertext);
            Assert.True(cases[i].Plaintext.AsSpan().SequenceEqual(ciphertext), $"case {i} does not decrypt back");
        }
    }

    private const string PythonXts = """
        import sys
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        for line in sys.stdin.read().split("\n"):
            if not line.strip():
                continue
            key, sector, data = line.split()
            enc = Cipher(algorithms.AES(bytes.fromhex(key)), modes.XTS(int(sector).to_bytes(16, "little"))).encryptor()
            print((enc.update(bytes.fromhex(data)) + enc.finalize()).hex())
        """;
}
