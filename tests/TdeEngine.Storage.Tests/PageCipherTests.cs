using System.Security.Cryptography;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Tests;

/// <summary>One contract, every page cipher implementation: known answers, in-place opening, tamper detection.</summary>
public class PageCipherTests
{
    public static TheoryData<string> Implementations => ["sodium-aes-256-gcm", "dotnet-aes-256-gcm", "aegis-256"];

    private static IPageCipher Create(string name, ReadOnlySpan<byte> key) => name switch
    {
        "sodium-aes-256-gcm" => new SodiumAesGcmPageCipher(key),
        "dotnet-aes-256-gcm" => new OneShotAesGcmPageCipher(key),
        _ => new Aegis256PageCipher(key),
    };

    [Theory]
    [MemberData(nameof(Implementations))]
    public void Known_answer(string name)
    {
        // AES-256-GCM: test case 14 of the GCM specification. AEGIS-256: test vector 1 of draft-irtf-cfrg-aegis-aead (256-bit tag).
        var aegis = name == "aegis-256";
        var key = aegis ? Convert.FromHexString("1001000000000000000000000000000000000000000000000000000000000000") : new byte[32];
        var nonce = aegis ? Convert.FromHexString("1000020000000000000000000000000000000000000000000000000000000000") : new byte[12];
        var expectedCiphertext = aegis ? "754fc3d8c973246dcc6d741412a4b236" : "cea7403d4d606b6e074ec5d3baf39d18";
        var expectedTag = aegis ? "1181a1d18091082bf0266f66297d167d2e68b845f61a3b0527d31fc7b7b89f13" : "d0d1c8a799996bf0265b98b5d48ab919";
        using var cipher = Create(name, key);
        var plaintext = new byte[16];
        var ciphertext = new byte[16];
        var tag = new byte[aegis ? 32 : 16];

        cipher.Seal(nonce, [], plaintext, ciphertext, tag);

        Assert.Equal(expectedCiphertext, Convert.ToHexStringLower(ciphertext));
        Assert.Equal(expectedTag, Convert.ToHexStringLower(tag));
    }

    [Theory]
    [MemberData(nameof(Implementations))]
    public void Opens_in_place_and_refuses_any_change(string name)
    {
        var key = RandomNumberGenerator.GetBytes(32);
        using var cipher = Create(name, key);
        var aegis = name == "aegis-256";
        var nonce = RandomNumberGenerator.GetBytes(aegis ? 32 : 12);
        var aad = RandomNumberGenerator.GetBytes(30);
        var page = RandomNumberGenerator.GetBytes(4064);
        var buffer = new byte[4064];
        var tag = new byte[aegis ? 32 : 16];
        cipher.Seal(nonce, aad, page, buffer, tag);

        var tampered = (byte[])buffer.Clone();
        tampered[100] ^= 1;
        Assert.False(cipher.Open(nonce, aad, tampered, tag, new byte[4064]));
        var otherAad = (byte[])aad.Clone();
        otherAad[17] ^= 1;
        Assert.False(cipher.Open(nonce, otherAad, buffer, tag, new byte[4064]));

        Assert.True(cipher.Open(nonce, aad, buffer, tag, buffer));   // in place
        Assert.Equal(page, buffer);
    }

    [Fact]
    public void Reserve_sizes_are_trailer_header_nonce_and_tag()
    {
        Assert.Equal(4 + 12 + 16, PageCipherSuites.ReserveBytes(PageCipherSuite.Aes256Gcm));
        Assert.Equal(4 + 32 + 32, PageCipherSuites.ReserveBytes(PageCipherSuite.Aegis256));
        Assert.Equal(PageCipherSuite.Aegis256, PageCipherSuites.Parse("AEGIS-256"));
        Assert.Throws<ArgumentException>(() => PageCipherSuites.Parse("rot13"));
    }
}
