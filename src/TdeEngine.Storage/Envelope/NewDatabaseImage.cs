using TdeEngine.Storage.Keys;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Envelope;

/// <summary>The bytes of a brand-new TDE database: envelope region plus a sealed, empty page 1.</summary>
internal static class NewDatabaseImage
{
    public static byte[] Create(string path, string kmsKeyId, PageCipherSuite suite, int pageSize, DekCache keys)
    {
        var databaseId = new byte[16];
        Kms.Crypto.FastRandom.Fill(databaseId);
        // Bound to authenticated envelopes: the KMS unwraps this DEK only for an envelope with a MAC.
        var context = DatabaseEnvelope.ContextFor(databaseId, envelopeBound: true);
        using var dek = keys.Provider.GenerateDataKey(kmsKeyId, context);
        var reserve = PageCipherSuites.ReserveBytes(suite);
        var envelope = new DatabaseEnvelope
        {
            Sequence = 1,
            DatabaseId = databaseId,
            PageSize = pageSize,
            Reserve = reserve,
            Suite = suite,
            ActiveDekVersion = 1,
            KmsKeyArn = dek.KmsKeyArn,
            Deks = [new EnvelopeDek(1, suite, SealCounter.Block, dek.Wrapped) { EnvelopeBound = true }],
        };

        var image = new byte[DatabaseEnvelope.RegionSize + pageSize];
        using (var macKey = EnvelopeMacKey.Derive(dek.Plaintext.Span))
        {
            envelope.WriteSlot(image.AsSpan(DatabaseEnvelope.SlotOffset(1), DatabaseEnvelope.SlotSize), macKey);
        }

        var page = new byte[pageSize];
        EmptyDatabase.WritePage1(page, pageSize, reserve);
        var ciphers = new Dictionary<uint, IPageCipher> { [1] = PageCipher.Create(suite, dek.Plaintext.Span) };
        // Page 1 is the first of the seals the envelope reserves; the shared counter starts from the reservation.
        var counter = new SealCounter(path, 0, SealCounter.Block, PageCipherSuites.SealLimit(suite));
        using (var crypto = new DatabaseCrypto(databaseId, pageSize, reserve, 1, ciphers, [], counter))
        {
            crypto.Seal(PageFileKind.Database, 1, page, image.AsSpan(DatabaseEnvelope.RegionSize));
        }

        keys.Add(dek.Wrapped, context, dek.Plaintext.Span);
        return image;
    }
}
