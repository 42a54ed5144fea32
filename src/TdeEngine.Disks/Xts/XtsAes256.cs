using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace TdeEngine.Disks.Xts;

/// <summary>
/// XTS-AES-256 (IEEE 1619-2007, NIST SP 800-38E) over whole data units (sectors) whose length is a
/// multiple of 16 bytes, so ciphertext stealing is never needed. Built on
/// AES-ECB transforms created once and reused: per run of consecutive sectors, one ECB call for
/// all their tweaks and one for all their blocks.
/// </summary>
/// <remarks>
/// <para>For data unit (sector) number <c>i</c>, <c>T_0 = AES-256-ENC(K2, i as 16 bytes
/// little-endian)</c>, <c>T_j = T_{j-1} ⊗ α</c> in GF(2^128) (little-endian byte order, reduction
/// 0x87), and block <c>j</c> is <c>C_j = AES-256-ENC(K1, P_j ⊕ T_j) ⊕ T_j</c>. The mask
/// <c>T_0 ‖ T_1 ‖ …</c> of every sector of a run is computed first (all the sectors' T_0 in one ECB
/// call), XORed over the run, then one ECB call runs over the run and the mask is XORed again.</para>
/// <para>Not thread-safe: one instance serves one caller at a time (the disk's lock). Owns two
/// <see cref="Aes"/> objects, released on <see cref="Dispose"/>.</para>
/// </remarks>
internal sealed class XtsAes256 : IDisposable
{
    /// <summary>Bytes of an XTS-AES-256 key: K1 (data key) ‖ K2 (tweak key).</summary>
    public const int KeySize = 64;

    /// <summary>The AES block size.</summary>
    public const int BlockSize = 16;

    private readonly Aes _data;
    private readonly Aes _tweak;

    // Reused ECB transforms: .NET's one-shot EncryptEcb sets up a new native cipher context per
    // call (about 1 µs here), which is most of the cost of a 4 KiB sector.
    private readonly ICryptoTransform _encrypt;
    private readonly ICryptoTransform _decrypt;
    private readonly ICryptoTransform _tweakEncrypt;

    // The tweak mask of the current run, grown as needed and wiped after every use.
    private byte[] _mask = new byte[4096];
    private bool _disposed;

    /// <summary>Sets up the cipher. The caller still wipes its copy of <paramref name="key"/>.</summary>
    public XtsAes256(ReadOnlySpan<byte> key)
    {
        if (key.Length != KeySize)
        {
            throw new ArgumentException($"An XTS-AES-256 key is {KeySize} bytes (K1 ‖ K2), not {key.Length}.", nameof(key));
        }

        _data = Aes.Create();
        _tweak = Aes.Create();
        foreach (var aes in new[] { _data, _tweak })
        {
            aes.Mode = CipherMode.ECB;
            aes.Padding = PaddingMode.None;
        }

        _data.SetKey(key[..32]);
        _tweak.SetKey(key[32..]);
        _encrypt = _data.CreateEncryptor();
        _decrypt = _data.CreateDecryptor();
        _tweakEncrypt = _tweak.CreateEncryptor();
    }

    /// <summary>Encrypts one data unit. <paramref name="destination"/> may be <paramref name="source"/> itself.</summary>
    public void EncryptSector(ulong sectorNumber, ReadOnlySpan<byte> source, Span<byte> destination) =>
        TransformCopy(sectorNumber, source, destination, encrypt: true);

    /// <summary>Decrypts one data unit. <paramref name="destination"/> may be <paramref name="source"/> itself.</summary>
    public void DecryptSector(ulong sectorNumber, ReadOnlySpan<byte> source, Span<byte> destination) =>
        TransformCopy(sectorNumber, source, destination, encrypt: false);

    /// <summary>
    /// Encrypts consecutive data units in place: <paramref name="sectors"/> holds units
    /// <paramref name="firstSector"/>, <paramref name="firstSector"/> + 1, … of
    /// <paramref name="sectorSize"/> bytes each. The same bytes as <see cref="EncryptSector"/> per
    /// unit, in two ECB calls for the whole run instead of two per unit.
    /// </summary>
    public void EncryptSectors(ulong firstSector, int sectorSize, ArraySegment<byte> sectors) =>
        Transform(firstSector, sectorSize, sectors, encrypt: true);

    /// <summary>Decrypts consecutive data units in place (see <see cref="EncryptSectors"/>).</summary>
    public void DecryptSectors(ulong firstSector, int sectorSize, ArraySegment<byte> sectors) =>
        Transform(firstSector, sectorSize, sectors, encrypt: false);

    /// <summary>Releases both AES keys.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _encrypt.Dispose();
        _decrypt.Dispose();
        _tweakEncrypt.Dispose();
        _data.Dispose();
        _tweak.Dispose();
    }

    // The span form: through a pooled array, as the reused transforms take arrays.
    private void TransformCopy(ulong sectorNumber, ReadOnlySpan<byte> source, Span<byte> destination, bool encrypt)
    {
        if (destination.Length != source.Length)
        {
            throw new ArgumentException("The destination must be as long as the source.", nameof(destination));
        }

        if (source.Overlaps(destination, out var shift) && shift != 0)
        {
            throw new ArgumentException("The destination may be the source itself, but not a shifted view of it.", nameof(destination));
        }

        var scratch = ArrayPool<byte>.Shared.Rent(Math.Max(source.Length, 1));
        try
        {
            source.CopyTo(scratch);
            var unit = new ArraySegment<byte>(scratch, 0, source.Length);
            Transform(sectorNumber, source.Length, unit, encrypt);
            unit.AsSpan().CopyTo(destination);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch, clearArray: true);
        }
    }

    private void Transform(ulong firstSector, int sectorSize, ArraySegment<byte> sectors, bool encrypt)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (sectorSize <= 0 || sectorSize % BlockSize != 0)
        {
            throw new ArgumentException($"An XTS data unit here is a non-empty multiple of {BlockSize} bytes, not {sectorSize}.", nameof(sectorSize));
        }

        if (sectors.Count == 0 || sectors.Count % sectorSize != 0)
        {
            throw new ArgumentException($"The data is a non-empty whole number of {sectorSize}-byte data units, not {sectors.Count} bytes.", nameof(sectors));
        }

        if (_mask.Length < sectors.Count)
        {
            CryptographicOperations.ZeroMemory(_mask);
            _mask = new byte[sectors.Count];
        }

        var mask = _mask.AsSpan(0, sectors.Count);
        try
        {
            FillMasks(firstSector, sectorSize, mask);
            var data = sectors.AsSpan();
            Xor(data, mask, data);
            var transformed = (encrypt ? _encrypt : _decrypt).TransformBlock(sectors.Array!, sectors.Offset, sectors.Count, sectors.Array!, sectors.Offset);
            if (transformed != sectors.Count)
            {
                throw new CryptographicException($"The ECB transform returned {transformed} bytes of {sectors.Count}.");
            }

            Xor(data, mask, data);
        }
        finally
        {
            // The tweaks are AES-K2 outputs; wipe them like any other key-derived bytes.
            CryptographicOperations.ZeroMemory(mask);
        }
    }

    // Per unit i: T_0 = AES-K2(i, 16 bytes little-endian); T_{j+1} = T_j * alpha: the 128-bit value
    // read little-endian is shifted left by one, and a carry out of bit 127 folds back as 0x87.
    // The T_0 of all units come from one ECB call: unit numbers are laid out in the first 16 bytes
    // of each unit's mask, gathered, encrypted together, and scattered back.
    private void FillMasks(ulong firstSector, int sectorSize, Span<byte> mask)
    {
        var units = mask.Length / sectorSize;
        var tweaks = mask[..(units * BlockSize)];
        tweaks.Clear();
        for (var u = 0; u < units; u++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(tweaks[(u * BlockSize)..], unchecked(firstSector + (ulong)u));
        }

        _ = _tweakEncrypt.TransformBlock(_mask, 0, tweaks.Length, _mask, 0);

        // Scatter backwards, so a unit's T_0 is read before the mask of an earlier unit overwrites it.
        for (var u = units - 1; u >= 0; u--)
        {
            var lo = BinaryPrimitives.ReadUInt64LittleEndian(tweaks[(u * BlockSize)..]);
            var hi = BinaryPrimitives.ReadUInt64LittleEndian(tweaks[((u * BlockSize) + 8)..]);
            var unit = mask.Slice(u * sectorSize, sectorSize);
            if (BitConverter.IsLittleEndian)
            {
                // The same little-endian words, stored as machine words (no per-block slicing).
                var words = MemoryMarshal.Cast<byte, ulong>(unit);
                words[0] = lo;
                words[1] = hi;
                for (var w = 2; w + 1 < words.Length; w += 2)
                {
                    var carry = hi >> 63;
                    hi = (hi << 1) | (lo >> 63);
                    lo = (lo << 1) ^ (carry * 0x87);
                    words[w] = lo;
                    words[w + 1] = hi;
                }

                continue;
            }

            BinaryPrimitives.WriteUInt64LittleEndian(unit, lo);
            BinaryPrimitives.WriteUInt64LittleEndian(unit[8..], hi);
            for (var at = BlockSize; at < unit.Length; at += BlockSize)
            {
                var carry = hi >> 63;
                hi = (hi << 1) | (lo >> 63);
                lo = (lo << 1) ^ (carry * 0x87);
                BinaryPrimitives.WriteUInt64LittleEndian(unit[at..], lo);
                BinaryPrimitives.WriteUInt64LittleEndian(unit[(at + 8)..], hi);
            }
        }
    }

    private static void Xor(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b, Span<byte> destination)
    {
        // XOR is byte-order independent, so the bytes can be processed as SIMD vectors, then words
        // (sector sizes are multiples of 16 bytes; a vector may be 16, 32 or 64 bytes).
        var va = MemoryMarshal.Cast<byte, Vector<byte>>(a);
        var vb = MemoryMarshal.Cast<byte, Vector<byte>>(b);
        var vd = MemoryMarshal.Cast<byte, Vector<byte>>(destination);
        for (var i = 0; i < vd.Length; i++)
        {
            vd[i] = va[i] ^ vb[i];
        }

        var done = vd.Length * Vector<byte>.Count;
        var a64 = MemoryMarshal.Cast<byte, ulong>(a[done..]);
        var b64 = MemoryMarshal.Cast<byte, ulong>(b[done..]);
        var d64 = MemoryMarshal.Cast<byte, ulong>(destination[done..]);
        for (var i = 0; i < d64.Length; i++)
        {
            d64[i] = a64[i] ^ b64[i];
        }
    }
}
