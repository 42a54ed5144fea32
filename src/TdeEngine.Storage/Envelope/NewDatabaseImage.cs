using TdeEngine.Storage.Keys;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Envelope;

/// <summary>
/// The bytes of a brand-new TDE database: the envelope region alone, marked <see cref="DatabaseEnvelope.Empty"/>.
/// SQLite sees an empty file (no page), as it would for a new plain database, so <c>VACUUM INTO</c>
/// accepts it as a target; the VFS gives SQLite the page size and reserved bytes from the envelope
/// when it reads the header of the missing page 1, so its first page 1 has the cipher's trailer.
/// </summary>
internal static class NewDatabaseImage
{
    public static byte[] Create(string kmsKeyId, PageCipherSuite suite, int pageSize, DekCache keys)
    {
        var databaseId = new byte[16];
        Kms.Crypto.FastRandom.Fill(databaseId);
        // Bound to authenticated envelopes: the KMS unwraps this DEK only for an envelope with a MAC.
        var context = DatabaseEnvelope.ContextFor(databaseId, envelopeBound: true);
        using var dek = keys.Provider.GenerateDataKey(kmsKeyId, context);
        var envelope = new DatabaseEnvelope
        {
            Sequence = 1,
            DatabaseId = databaseId,
            PageSize = pageSize,
            Reserve = PageCipherSuites.ReserveBytes(suite),
            Suite = suite,
            ActiveDekVersion = 1,
            KmsKeyArn = dek.KmsKeyArn,
            Deks = [new EnvelopeDek(1, suite, SealCounter.Block, dek.Wrapped) { EnvelopeBound = true }],
            Empty = true,
        };

        var image = new byte[DatabaseEnvelope.RegionSize];
        using (var macKey = EnvelopeMacKey.Derive(dek.Plaintext.Span))
        {
            envelope.WriteSlot(image.AsSpan(DatabaseEnvelope.SlotOffset(1), DatabaseEnvelope.SlotSize), macKey);
        }

        keys.Add(dek.Wrapped, context, dek.Plaintext.Span);
        return image;
    }
}
