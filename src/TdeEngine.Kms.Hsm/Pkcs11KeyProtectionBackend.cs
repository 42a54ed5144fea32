using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Net.Pkcs11Interop.Common;
using Net.Pkcs11Interop.HighLevelAPI;
using TdeEngine.Kms.Crypto;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Protection;

namespace TdeEngine.Kms.Hsm;

/// <summary>
/// Hardware protection over any PKCS#11 module: each key version is an AES-256 secret key generated
/// inside the token (<c>CKA_EXTRACTABLE=false</c>, <c>CKA_SENSITIVE=true</c>, <c>CKA_TOKEN=true</c>,
/// labelled <c>tde:&lt;keyId&gt;:&lt;versionId&gt;</c>), and every seal and open is <c>CKM_AES_GCM</c> in the
/// token with the blob header and EncryptionContext as AAD (blob algorithm 1). The key store keeps
/// only the label.
/// </summary>
/// <remarks>Thread-safe: operations take a session from a pool; the user logs in once.</remarks>
public sealed class Pkcs11KeyProtectionBackend : IKeyProtectionBackend, IKeyImportBackend, IDisposable
{
    private const string ReferencePrefix = "pkcs11:";
    private static readonly Lazy<bool> LibdlWorkaround = new(InstallLibdlResolver);

    private readonly Pkcs11InteropFactories _factories = new();
    private readonly IPkcs11Library _library;
    private readonly ConcurrentBag<ISession> _sessions = [];
    private readonly SemaphoreSlim _available;
    private readonly ConcurrentDictionary<string, IObjectHandle> _handles = new(StringComparer.Ordinal);
    private readonly List<ISession> _all = [];

    public Pkcs11KeyProtectionBackend(HsmOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _ = LibdlWorkaround.Value;
        Options = options;
        try
        {
            _library = Call("C_Initialize", () => _factories.Pkcs11LibraryFactory.LoadPkcs11Library(_factories, options.ModulePath, AppType.MultiThreaded));
        }
        catch (UnmanagedException e)
        {
            // A module path that is wrong or not a PKCS#11 library: not a CKR_* from the token.
            throw new HsmException("Loading the PKCS#11 module", "an error",
                $"'{options.ModulePath}' could not be loaded as a PKCS#11 module ({e.Message}). Check TDE_HSM_MODULE (HsmOptions.ModulePath): for SoftHSM2 it is /usr/lib/softhsm/libsofthsm2.so.", e);
        }

        var slot = Call("C_GetSlotList", () => _library.GetSlotList(SlotsType.WithTokenPresent))
            .FirstOrDefault(s => Call("C_GetTokenInfo", () => s.GetTokenInfo()).Label.Trim() == options.TokenLabel)
            ?? throw new HsmException("C_GetSlotList", "CKR_TOKEN_NOT_PRESENT",
                $"No token labelled '{options.TokenLabel}' is present. " + HsmException.Advice("CKR_TOKEN_NOT_PRESENT"));
        var pin = options.ReadPin();
        try
        {
            for (var i = 0; i < Math.Max(1, options.SessionPoolSize); i++)
            {
                var session = Call("C_OpenSession", () => slot.OpenSession(SessionType.ReadWrite));
                if (i == 0)
                {
                    Call("C_Login", () => session.Login(CKU.CKU_USER, pin));
                }

                _all.Add(session);
                _sessions.Add(session);
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pin);
        }

        _available = new SemaphoreSlim(_all.Count, _all.Count);
    }

    public HsmOptions Options { get; }

    /// <summary>
    /// Installs the native-library workaround Pkcs11Interop needs on this glibc (it asks for
    /// <c>libdl</c>; glibc ships <c>libdl.so.2</c>). Call it before using Pkcs11Interop directly; the
    /// backend calls it itself.
    /// </summary>
    public static void EnsureNativeLoader() => _ = LibdlWorkaround.Value;

    public string ProtectionLevel => "HSM";

    public byte[] CreateMaterial(KeyVersionRef version)
    {
        var label = Label(version);
        var attributes = TokenAesKeyTemplate(label, Encoding.UTF8.GetBytes(version.KeyVersionId));
        var handle = WithSession(s => Call("C_GenerateKey", () => s.GenerateKey(_factories.MechanismFactory.Create(CKM.CKM_AES_KEY_GEN), attributes)));
        _handles[label] = handle;
        return Encoding.UTF8.GetBytes(ReferencePrefix + label);
    }

    public byte[] ImportMaterial(KeyVersionRef version, ReadOnlySpan<byte> material) =>
        throw new Errors.KmsException("UnsupportedOperation", 400,
            "Plaintext material never enters the HSM through the KMS; import it wrapped (GetParametersForImport, ImportKeyMaterial).");

    /// <summary>An RSA wrapping pair generated in the token: the private key is non-extractable and may only unwrap.</summary>
    public (byte[] PublicKey, byte[] PrivateKeyReference) CreateWrappingKey(int bits, string tokenId)
    {
        var label = "tde-import:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(tokenId)))[..32];
        List<IObjectAttribute> publicTemplate =
        [
            _factories.ObjectAttributeFactory.Create(CKA.CKA_TOKEN, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_MODULUS_BITS, (ulong)bits),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_PUBLIC_EXPONENT, new byte[] { 1, 0, 1 }),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_WRAP, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_ENCRYPT, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_LABEL, label),
        ];
        List<IObjectAttribute> privateTemplate =
        [
            _factories.ObjectAttributeFactory.Create(CKA.CKA_TOKEN, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_PRIVATE, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_SENSITIVE, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_EXTRACTABLE, false),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_UNWRAP, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_DECRYPT, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_LABEL, label),
        ];
        return WithSession(s =>
        {
            IObjectHandle publicKey = null!, privateKey = null!;
            Call("C_GenerateKeyPair", () => s.GenerateKeyPair(_factories.MechanismFactory.Create(CKM.CKM_RSA_PKCS_KEY_PAIR_GEN), publicTemplate, privateTemplate,
                out publicKey, out privateKey));
            var values = Call("C_GetAttributeValue", () => s.GetAttributeValue(publicKey, [CKA.CKA_MODULUS, CKA.CKA_PUBLIC_EXPONENT]));
            using var rsa = System.Security.Cryptography.RSA.Create();
            rsa.ImportParameters(new RSAParameters { Modulus = values[0].GetValueAsByteArray(), Exponent = values[1].GetValueAsByteArray() });
            _handles["import:" + label] = privateKey;
            return (rsa.ExportSubjectPublicKeyInfo(), Encoding.UTF8.GetBytes(ReferencePrefix + label));
        });
    }

    /// <summary>Destroys both halves of an import token's wrapping pair (found by their label).</summary>
    public bool DestroyWrappingKey(ReadOnlySpan<byte> privateKeyReference)
    {
        var text = Encoding.UTF8.GetString(privateKeyReference);
        if (!text.StartsWith(ReferencePrefix + "tde-import:", StringComparison.Ordinal))
        {
            return false;
        }

        var label = text[ReferencePrefix.Length..];
        _handles.TryRemove("import:" + label, out _);
        WithSession(s =>
        {
            foreach (var found in Call("C_FindObjects", () => s.FindAllObjects([_factories.ObjectAttributeFactory.Create(CKA.CKA_LABEL, label)])))
            {
                Call("C_DestroyObject", () => s.DestroyObject(found));
            }

            return 0;
        });
        return true;
    }

    /// <summary>Unwraps the material with CKM_RSA_PKCS_OAEP inside the token, as a non-extractable AES-256 key version.</summary>
    public (byte[] Persisted, byte[] CheckValue) UnwrapMaterial(KeyVersionRef version, ReadOnlySpan<byte> privateKeyReference, ReadOnlySpan<byte> wrapped,
        RSAEncryptionPadding padding)
    {
        var importLabel = LabelOf(privateKeyReference);
        var privateKey = _handles.GetOrAdd("import:" + importLabel, _ => WithSession(s =>
        {
            var found = Call("C_FindObjects", () => s.FindAllObjects([Attribute(CKA.CKA_CLASS, CKO.CKO_PRIVATE_KEY), _factories.ObjectAttributeFactory.Create(CKA.CKA_LABEL, importLabel)]));
            return found.Count == 1 ? found[0] : throw new HsmException("C_FindObjects", "CKR_OBJECT_HANDLE_INVALID", "The import token's private key is not in the token.");
        }));
        var sha256 = padding == RSAEncryptionPadding.OaepSHA256;
        var oaep = _factories.MechanismParamsFactory.CreateCkRsaPkcsOaepParams(
            ConvertUtils.UInt64FromCKM(sha256 ? CKM.CKM_SHA256 : CKM.CKM_SHA_1),
            ConvertUtils.UInt64FromCKG(sha256 ? CKG.CKG_MGF1_SHA256 : CKG.CKG_MGF1_SHA1),
            ConvertUtils.UInt64FromUInt32(CKZ.CKZ_DATA_SPECIFIED), null);
        var label = Label(version);
        // Unwrap into an extractable session object first: SoftHSM2 neither accepts CKA_VALUE_LEN in an
        // unwrap template nor reports it for unwrapped AES keys, so the length is measured by wrapping the
        // session object under an ephemeral AES key (RFC 3394 output = key length + 8). The material never
        // leaves the token in the clear; the token object is then a non-extractable copy.
        List<IObjectAttribute> template =
        [
            Attribute(CKA.CKA_CLASS, CKO.CKO_SECRET_KEY),
            Attribute(CKA.CKA_KEY_TYPE, CKK.CKK_AES),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_TOKEN, false),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_PRIVATE, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_SENSITIVE, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_EXTRACTABLE, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_ENCRYPT, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_DECRYPT, true),
        ];
        var input = wrapped.ToArray();
        var key = WithSession(s =>
        {
            IObjectHandle transient;
            try
            {
                transient = Call("C_UnwrapKey", () => s.UnwrapKey(_factories.MechanismFactory.Create(CKM.CKM_RSA_PKCS_OAEP, oaep), privateKey, input, template));
            }
            catch (HsmException e) when (sha256 && e.ReturnValue is "CKR_ARGUMENTS_BAD" or "CKR_MECHANISM_PARAM_INVALID")
            {
                throw new Errors.KmsException("UnsupportedOperation", 400,
                    "This HSM does not unwrap with RSAES_OAEP_SHA_256 (SoftHSM2 supports OAEP with SHA-1 only). Call GetParametersForImport with --WrappingAlgorithm RSAES_OAEP_SHA_1.", e);
            }

            try
            {
                var length = MeasureKeyLength(s, transient);
                if (length != 32)
                {
                    throw new Errors.KmsException("InvalidKeyMaterial", 400, $"The key material is not valid: Aliyun_AES_256 material is 32 bytes, not {length}.");
                }

                return Call("C_CopyObject", () => s.CopyObject(transient,
                [
                    _factories.ObjectAttributeFactory.Create(CKA.CKA_TOKEN, true),
                    _factories.ObjectAttributeFactory.Create(CKA.CKA_EXTRACTABLE, false),
                    _factories.ObjectAttributeFactory.Create(CKA.CKA_LABEL, label),
                    _factories.ObjectAttributeFactory.Create(CKA.CKA_ID, Encoding.UTF8.GetBytes(version.KeyVersionId)),
                ]));
            }
            finally
            {
                Call("C_DestroyObject", () => s.DestroyObject(transient));
            }
        });
        _handles[label] = key;
        // Key check value: the key's AES-GCM encryption of a zero block under a zero IV (equal keys, equal values).
        var checkValue = Encrypt(key, new byte[12], "TdeEngine-key-check-value"u8.ToArray(), new byte[16]);
        return (Encoding.UTF8.GetBytes(ReferencePrefix + label), checkValue);
    }

    private int MeasureKeyLength(ISession session, IObjectHandle key)
    {
        var wrapper = Call("C_GenerateKey", () => session.GenerateKey(_factories.MechanismFactory.Create(CKM.CKM_AES_KEY_GEN),
        [
            Attribute(CKA.CKA_CLASS, CKO.CKO_SECRET_KEY),
            Attribute(CKA.CKA_KEY_TYPE, CKK.CKK_AES),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_VALUE_LEN, 32UL),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_TOKEN, false),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_SENSITIVE, true),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_EXTRACTABLE, false),
            _factories.ObjectAttributeFactory.Create(CKA.CKA_WRAP, true),
        ]));
        try
        {
            var sealedKey = Call("C_WrapKey", () => session.WrapKey(_factories.MechanismFactory.Create(CKM.CKM_AES_KEY_WRAP), wrapper, key));
            var length = sealedKey.Length - 8;
            CryptographicOperations.ZeroMemory(sealedKey);
            return length;
        }
        finally
        {
            Call("C_DestroyObject", () => session.DestroyObject(wrapper));
        }
    }

    public IKeyVersionCipher OpenCipher(KeyVersionRef version, ReadOnlySpan<byte> persisted) => new HsmKeyVersionCipher(this, Find(persisted));

    public void DestroyMaterial(KeyVersionRef version, ReadOnlySpan<byte> persisted)
    {
        var label = LabelOf(persisted);
        var handle = Find(persisted);
        WithSession(s =>
        {
            Call("C_DestroyObject", () => s.DestroyObject(handle));
            return 0;
        });
        _handles.TryRemove(label, out _);
    }

    /// <summary>Reads boolean attributes of a key version's object (for checks such as CKA_EXTRACTABLE).</summary>
    public IReadOnlyDictionary<CKA, bool> ReadFlags(ReadOnlySpan<byte> persisted, params CKA[] attributes)
    {
        var handle = Find(persisted);
        return WithSession(s =>
        {
            var values = Call("C_GetAttributeValue", () => s.GetAttributeValue(handle, attributes.ToList()));
            return (IReadOnlyDictionary<CKA, bool>)attributes.Zip(values).ToDictionary(p => p.First, p => p.Second.GetValueAsBool());
        });
    }

    public void Dispose()
    {
        foreach (var session in _all)
        {
            try
            {
                session.Dispose();
            }
            catch (Pkcs11Exception)
            {
                // The module was already finalized (for example by another library handle in this process).
            }
        }

        try
        {
            _library.Dispose();
        }
        catch (Pkcs11Exception)
        {
        }

        _available.Dispose();
    }

    internal byte[] Encrypt(IObjectHandle key, byte[] nonce, byte[] aad, byte[] plaintext) => WithSession(s =>
    {
        var mechanism = _factories.MechanismFactory.Create(CKM.CKM_AES_GCM, _factories.MechanismParamsFactory.CreateCkGcmParams(nonce, 96, aad, 128));
        return Call("C_Encrypt", () => s.Encrypt(mechanism, key, plaintext));
    });

    internal byte[]? Decrypt(IObjectHandle key, byte[] nonce, byte[] aad, byte[] ciphertextAndTag) => WithSession(s =>
    {
        var mechanism = _factories.MechanismFactory.Create(CKM.CKM_AES_GCM, _factories.MechanismParamsFactory.CreateCkGcmParams(nonce, 96, aad, 128));
        try
        {
            return s.Decrypt(mechanism, key, ciphertextAndTag);
        }
        catch (Pkcs11Exception e) when (e.RV is CKR.CKR_ENCRYPTED_DATA_INVALID or CKR.CKR_GENERAL_ERROR or CKR.CKR_ENCRYPTED_DATA_LEN_RANGE)
        {
            return null;   // does not authenticate (SoftHSM2 reports a wrong tag as CKR_GENERAL_ERROR)
        }
    });

    /// <summary>
    /// Finds the AES-256 root key object labelled <paramref name="label"/>, or generates it in the token
    /// (non-extractable, sensitive, a token object) with a random CKA_ID that names it in wrapped bytes.
    /// </summary>
    internal (IObjectHandle Key, byte[] Id) FindOrCreateRootKey(string label, int idLength) => WithSession(s =>
    {
        List<IObjectAttribute> search = [Attribute(CKA.CKA_CLASS, CKO.CKO_SECRET_KEY), _factories.ObjectAttributeFactory.Create(CKA.CKA_LABEL, label)];
        var found = Call("C_FindObjects", () => s.FindAllObjects(search));
        if (found.Count > 1)
        {
            throw new HsmException("C_FindObjects", "CKR_GENERAL_ERROR", $"The token holds {found.Count} root key objects labelled '{label}'; keep the one whose CKA_ID the key store names and delete the others.");
        }

        if (found.Count == 1)
        {
            return (found[0], Call("C_GetAttributeValue", () => s.GetAttributeValue(found[0], [CKA.CKA_ID]))[0].GetValueAsByteArray());
        }

        var id = RandomNumberGenerator.GetBytes(idLength);
        var key = Call("C_GenerateKey", () => s.GenerateKey(_factories.MechanismFactory.Create(CKM.CKM_AES_KEY_GEN), TokenAesKeyTemplate(label, id)));
        return (key, id);
    });

    /// <summary>An AES-256 token object that never leaves the token: sensitive, non-extractable, private.</summary>
    private List<IObjectAttribute> TokenAesKeyTemplate(string label, byte[] id) =>
    [
        Attribute(CKA.CKA_CLASS, CKO.CKO_SECRET_KEY),
        Attribute(CKA.CKA_KEY_TYPE, CKK.CKK_AES),
        _factories.ObjectAttributeFactory.Create(CKA.CKA_VALUE_LEN, 32UL),
        _factories.ObjectAttributeFactory.Create(CKA.CKA_TOKEN, true),
        _factories.ObjectAttributeFactory.Create(CKA.CKA_PRIVATE, true),
        _factories.ObjectAttributeFactory.Create(CKA.CKA_SENSITIVE, true),
        _factories.ObjectAttributeFactory.Create(CKA.CKA_EXTRACTABLE, false),
        _factories.ObjectAttributeFactory.Create(CKA.CKA_ENCRYPT, true),
        _factories.ObjectAttributeFactory.Create(CKA.CKA_DECRYPT, true),
        _factories.ObjectAttributeFactory.Create(CKA.CKA_LABEL, label),
        _factories.ObjectAttributeFactory.Create(CKA.CKA_ID, id),
    ];

    private IObjectHandle Find(ReadOnlySpan<byte> persisted)
    {
        var label = LabelOf(persisted);
        return _handles.GetOrAdd(label, l => WithSession(s =>
        {
            var found = Call("C_FindObjects", () => s.FindAllObjects([Attribute(CKA.CKA_CLASS, CKO.CKO_SECRET_KEY), _factories.ObjectAttributeFactory.Create(CKA.CKA_LABEL, l)]));
            return found.Count == 1 ? found[0] : throw new HsmException("C_FindObjects", "CKR_OBJECT_HANDLE_INVALID",
                $"The key object '{l}' is not in the token. " + HsmException.Advice("CKR_OBJECT_HANDLE_INVALID"));
        }));
    }

    private T WithSession<T>(Func<ISession, T> work)
    {
        _available.Wait();
        if (!_sessions.TryTake(out var session))
        {
            _available.Release();
            throw new InvalidOperationException("The HSM session pool is inconsistent.");
        }

        try
        {
            return work(session);
        }
        finally
        {
            _sessions.Add(session);
            _available.Release();
        }
    }

    private IObjectAttribute Attribute(CKA type, CKO value) => _factories.ObjectAttributeFactory.Create(type, value);

    private IObjectAttribute Attribute(CKA type, CKK value) => _factories.ObjectAttributeFactory.Create(type, value);

    private static string Label(KeyVersionRef version) => $"tde:{version.KeyId}:{version.KeyVersionId}";

    private static string LabelOf(ReadOnlySpan<byte> persisted)
    {
        var text = Encoding.UTF8.GetString(persisted);
        return text.StartsWith(ReferencePrefix, StringComparison.Ordinal) ? text[ReferencePrefix.Length..]
            : throw new HsmException("C_FindObjects", "CKR_ARGUMENTS_BAD", "The stored key reference is not a PKCS#11 label.");
    }

    private static T Call<T>(string function, Func<T> call)
    {
        try
        {
            return call();
        }
        catch (Pkcs11Exception e)
        {
            var rv = e.RV.ToString();
            throw new HsmException(function, rv, HsmException.Advice(rv), e);
        }
    }

    private static void Call(string function, Action call) => Call(function, () =>
    {
        call();
        return 0;
    });

    // Pkcs11Interop 5.3.0 asks for 'libdl', which glibc 2.34+ ships only as libdl.so.2.
    private static bool InstallLibdlResolver()
    {
        NativeLibrary.SetDllImportResolver(typeof(Pkcs11InteropFactories).Assembly, (name, assembly, path) =>
            name == "libdl" && NativeLibrary.TryLoad("libdl.so.2", out var handle) ? handle : IntPtr.Zero);
        return true;
    }
}

/// <summary>Seals and opens blobs with a key version that never leaves the token (blob algorithm 1, CKM_AES_GCM).</summary>
internal sealed class HsmKeyVersionCipher(Pkcs11KeyProtectionBackend backend, IObjectHandle key) : IKeyVersionCipher
{
    public BlobAlgorithm Algorithm => BlobAlgorithm.Aes256Gcm;

    public void Seal(ReadOnlySpan<byte> aad, ReadOnlySpan<byte> plaintext, Span<byte> nonceRegion, Span<byte> ciphertext, Span<byte> tag)
    {
        FastRandom.Fill(nonceRegion);
        var plain = plaintext.ToArray();
        try
        {
            var sealedBytes = backend.Encrypt(key, nonceRegion.ToArray(), aad.ToArray(), plain);
            sealedBytes.AsSpan(0, ciphertext.Length).CopyTo(ciphertext);
            sealedBytes.AsSpan(ciphertext.Length).CopyTo(tag);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(plain);
        }
    }

    public bool TryOpen(BlobAlgorithm algorithm, ReadOnlySpan<byte> aad, ReadOnlySpan<byte> nonceRegion, ReadOnlySpan<byte> ciphertext,
        ReadOnlySpan<byte> tag, Span<byte> plaintext)
    {
        if (algorithm != BlobAlgorithm.Aes256Gcm)
        {
            return false;
        }

        var input = new byte[ciphertext.Length + tag.Length];
        ciphertext.CopyTo(input);
        tag.CopyTo(input.AsSpan(ciphertext.Length));
        var opened = backend.Decrypt(key, nonceRegion.ToArray(), aad.ToArray(), input);
        if (opened is null)
        {
            return false;
        }

        try
        {
            opened.CopyTo(plaintext);
            return true;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(opened);
        }
    }

    public void Dispose()
    {
        // The key lives in the token; there is nothing to wipe here.
    }
}
