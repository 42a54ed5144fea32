using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Secrets;
using TdeEngine.Storage.Errors;
using TdeEngine.Storage.Keys;
using TdeEngine.Storage.Pages;

namespace TdeEngine.Storage.Envelope;

/// <summary>
/// Unwraps a database's DEKs and checks its envelope's MAC with the active one: every path that
/// unwraps a DEK (opening through the VFS, verify, re-wrap, re-encryption) goes through here.
/// </summary>
internal static class EnvelopeAuthentication
{
    /// <summary>
    /// Checks the MAC of <paramref name="envelope"/> and returns the MAC key of its active DEK (the
    /// caller disposes it): taken from <paramref name="crypto"/> when it holds that DEK, else
    /// unwrapped through the cache. Throws <c>Tde.EnvelopeTampered</c> when the MAC fails.
    /// </summary>
    public static EnvelopeMacKey Authenticate(DatabaseEnvelope envelope, string path, DekCache keys, DatabaseCrypto? crypto = null, bool requireMac = false)
    {
        var macKey = crypto?.CopyMacKey(envelope.ActiveDekVersion);
        if (macKey is null)
        {
            using var dek = UnwrapDek(keys, envelope.ActiveDek, envelope, path);
            macKey = EnvelopeMacKey.Derive(dek.Span);
        }

        try
        {
            envelope.VerifyMac(macKey, path, requireMac);
            return macKey;
        }
        catch
        {
            macKey.Dispose();
            throw;
        }
    }

    // An envelope without a MAC whose DEK the KMS refuses: does the DEK open under the context of
    // authenticated envelopes? Then the envelope was rewritten in the old format (a downgrade). Only
    // on this failure path, so opening costs no extra KMS call.
    private static bool IsBound(DekCache keys, EnvelopeDek dek, DatabaseEnvelope envelope)
    {
        try
        {
            using var key = keys.Get(dek.WrappedDek, DatabaseEnvelope.ContextFor(envelope.DatabaseId, envelopeBound: true));
            return true;
        }
        catch (Exception)
        {
            return false;
        }
    }

    /// <summary>Unwraps one DEK of the envelope (through the cache), with its EncryptionContext; KMS failures become typed errors that name the file.</summary>
    public static SecretBuffer UnwrapDek(DekCache keys, EnvelopeDek dek, DatabaseEnvelope envelope, string path)
    {
        try
        {
            return keys.Get(dek.WrappedDek, envelope.ContextOf(dek));
        }
        catch (KmsException e)
        {
            if (e.Code == KmsErrors.Codes.InvalidCiphertext && !envelope.Authenticated && IsBound(keys, dek, envelope))
            {
                throw DatabaseEnvelope.Tampered(path,
                    $"it is in the format of earlier builds, which has no MAC, but its DEK version {dek.Version} is bound to envelopes with a MAC (it was rewritten in the old format)");
            }

            throw new TdeStorageException(TdeStorageException.Codes.KeyUnavailable,
                $"The KMS refused the DEK of '{path}' (key {envelope.KmsKeyArn}): {e.Code}: {e.Message}", path, inner: e);
        }
        catch (Exception e) when (e is not TdeStorageException)
        {
            throw new TdeStorageException(TdeStorageException.Codes.KmsUnreachable,
                $"The KMS could not be reached to unwrap the DEK of '{path}' (key {envelope.KmsKeyArn}): {e.Message} Check that the KMS is running and reachable, then retry.",
                path, inner: e);
        }
    }
}
