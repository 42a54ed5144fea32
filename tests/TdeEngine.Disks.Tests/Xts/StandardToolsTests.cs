using TdeEngine.Disks.Format;
using TdeEngine.Disks.Tests.Infrastructure;

namespace TdeEngine.Disks.Tests.Xts;

/// <summary>
/// No lock-in: given the DEK (from KMS Decrypt of the header's wrapped DEK), a sector of the image
/// decrypts with Python's `cryptography` following only docs/disks.md (HKDF-SHA256, then XTS).
/// </summary>
public sealed class StandardToolsTests : IDisposable
{
    private readonly DiskFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(512, 5)]
    [InlineData(4096, 3)]
    public void Python_cryptography_decrypts_a_sector_of_the_image_with_the_documented_derivation(int sectorSize, int sector)
    {
        var plaintext = DiskFolder.Pattern(sectorSize, sector);
        using (var disk = _dir.Create("py.img", 8L * sectorSize, sectorSize))
        {
            disk.Write((long)sector * sectorSize, plaintext);
        }

        var raw = _dir.Raw("py.img");
        var header = DiskHeader.Read(raw.AsSpan(0, DiskFolder.HeaderRegion), "py.img");
        using var dek = TestKms.Keys.Decrypt(header.WrappedDek, header.Context);
        var ciphertext = raw.AsSpan(DiskFolder.HeaderRegion + (sector * sectorSize), sectorSize);

        var input = string.Join(' ', Convert.ToHexStringLower(dek.Span), Convert.ToHexStringLower(raw.AsSpan(24, 16)),
            sector.ToString(System.Globalization.CultureInfo.InvariantCulture), Convert.ToHexStringLower(ciphertext));
        var output = Python.Run(Script, input).Trim();

        Assert.Equal(Convert.ToHexStringLower(plaintext), output);
    }

    private const string Script = """
        import sys
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        dek, disk_id, sector, data = sys.stdin.read().split()
        key = HKDF(algorithm=hashes.SHA256(), length=64, salt=bytes.fromhex(disk_id), info=b"TdeEngine/disk/xts-aes-256/v1").derive(bytes.fromhex(dek))
        dec = Cipher(algorithms.AES(key), modes.XTS(int(sector).to_bytes(16, "little"))).decryptor()
        print((dec.update(bytes.fromhex(data)) + dec.finalize()).hex())
        """;
}
