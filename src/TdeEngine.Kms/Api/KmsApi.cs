using System.Globalization;
using System.Text.Json;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.Secrets;

namespace TdeEngine.Kms.Api;

/// <summary>
/// The Alibaba Cloud KMS OpenAPI (2016-01-20) as a function: an action name and its string
/// parameters in, an HTTP status and the JSON body out. The CLI and the server both call it, so
/// there is one implementation of every action.
/// </summary>
/// <remarks>
/// Thread-safe. Errors never escape as exceptions: a <see cref="KmsException"/> becomes its code,
/// status and message; anything else becomes <c>InternalFailure</c> without internal details.
/// </remarks>
public sealed class KmsApi
{
    private delegate void Handler(KeyManagementService kms, KmsCallContext context, ActionParameters p, Utf8JsonWriter w);

    private static readonly Dictionary<string, (Handler Handler, string Help)> Handlers = BuildHandlers();

    private readonly KeyManagementService _kms;

    /// <summary>Serves the OpenAPI over a KMS.</summary>
    public KmsApi(KeyManagementService kms) => _kms = kms ?? throw new ArgumentNullException(nameof(kms));

    /// <summary>The actions served, with a one-line usage each, for <c>tde kms --help</c>.</summary>
    public static IReadOnlyList<(string Action, string Usage)> Actions { get; } =
        Handlers.OrderBy(h => h.Key, StringComparer.Ordinal).Select(h => (h.Key, h.Value.Help)).ToList();

    /// <summary>Runs one action.</summary>
    public KmsApiResponse Invoke(KmsCallContext context, string action, IReadOnlyDictionary<string, string> parameters, bool indented = false)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        return ApiResponse.Execute(context, indented, writer =>
        {
            if (!Handlers.TryGetValue(action ?? "", out var entry))
            {
                throw KmsErrors.InvalidAction(action ?? "");
            }

            entry.Handler(_kms, context, new ActionParameters(parameters), writer);
        });
    }

    private static Dictionary<string, (Handler, string)> BuildHandlers() => new(StringComparer.Ordinal)
    {
        ["CreateKmsInstance"] = ((kms, c, p, w) =>
        {
            var instance = kms.CreateKmsInstance(c, p.Required("ProductType"), p.OptionalInt("KeyNum"), p.OptionalInt("Spec"));
            w.WriteString("KmsInstanceId", instance.KmsInstanceId);
        }, "--ProductType software|hardware [--KeyNum 100..100000] [--Spec 200|1000|2000|4000]"),

        ["ListKmsInstances"] = ((kms, c, p, w) =>
        {
            // Alibaba documents a default page of 20 here; the key, alias and version lists default to 10.
            var page = kms.ListKmsInstances(c, p.PageNumber, p.OptionalInt("PageSize", 1, 100) ?? 20);
            WriteList(w, "KmsInstances", "KmsInstance", page, (w, i) =>
            {
                w.WriteString("KmsInstanceId", i.KmsInstanceId);
                w.WriteString("KmsInstanceArn", i.KmsInstanceArn);
                w.WriteString("ProductType", i.ProductType);
                w.WriteNumber("KeyNum", i.KeyNum);
                w.WriteNumber("Spec", i.Spec);
                WriteDate(w, "CreationDate", i.CreationDate);
            });
        }, "[--PageNumber N] [--PageSize 1..100 (default 20)]"),

        ["CreateKey"] = ((kms, c, p, w) =>
        {
            var interval = p.Optional("RotationInterval") is { } text ? KeyIdentifiers.ParseInterval(text, "RotationInterval") : (TimeSpan?)null;
            var metadata = kms.CreateKey(c, new CreateKeyRequest
            {
                Description = p.Optional("Description"),
                KeySpec = p.Optional("KeySpec"),
                KeyUsage = p.Optional("KeyUsage"),
                Origin = p.Optional("Origin"),
                ProtectionLevel = p.Optional("ProtectionLevel"),
                EnableAutomaticRotation = p.OptionalBool("EnableAutomaticRotation") ?? false,
                RotationInterval = interval,
                DKMSInstanceId = p.Optional("DKMSInstanceId"),
                Tags = p.Tags("Tags"),
            });
            WriteMetadata(w, metadata, describe: false);
        }, "[--Description D] [--KeySpec Aliyun_AES_256] [--KeyUsage ENCRYPT/DECRYPT] [--Origin Aliyun_KMS|EXTERNAL] [--ProtectionLevel SOFTWARE|HSM] [--DKMSInstanceId ID] [--EnableAutomaticRotation true --RotationInterval 30d] [--Tags JSON]"),

        ["DescribeKey"] = ((kms, c, p, w) => WriteMetadata(w, kms.DescribeKey(c, p.Required("KeyId")), describe: true), "--KeyId ID|ARN|alias"),

        ["ListKeys"] = ((kms, c, p, w) =>
        {
            var filters = p.Filters("Filters");
            foreach (var (key, _) in filters)
            {
                // Refused up front: FilterValue sees a filter only when there is a key to compare.
                _ = FilterKeys.Contains(key) ? key : throw UnknownFilterKey(key);
            }

            var page = kms.ListKeys(c, p.PageNumber, p.PageSize, filters.Count == 0 ? null : m => filters.All(f => f.Values.Contains(FilterValue(m, f.Key))));
            WriteList(w, "Keys", "Key", page, (w, k) =>
            {
                w.WriteString("KeyId", k.KeyId);
                w.WriteString("KeyArn", k.KeyArn);
            });
        }, "[--PageNumber N] [--PageSize 1..100] [--Filters '[{\"Key\":\"KeyState\",\"Values\":[\"Enabled\"]}]']"),

        ["UpdateKeyDescription"] = ((kms, c, p, _) => kms.UpdateKeyDescription(c, p.Required("KeyId"), p.RequiredAllowEmpty("Description")),
            "--KeyId ID --Description D"),
        ["EnableKey"] = ((kms, c, p, _) => kms.EnableKey(c, p.Required("KeyId")), "--KeyId ID"),
        ["DisableKey"] = ((kms, c, p, _) => kms.DisableKey(c, p.Required("KeyId")), "--KeyId ID"),
        ["ScheduleKeyDeletion"] = ((kms, c, p, _) =>
            kms.ScheduleKeyDeletion(c, p.Required("KeyId"), p.OptionalInt("PendingWindowInDays") ?? throw KmsErrors.MissingParameter("PendingWindowInDays")),
            "--KeyId ID --PendingWindowInDays 7..366"),
        ["CancelKeyDeletion"] = ((kms, c, p, _) => kms.CancelKeyDeletion(c, p.Required("KeyId")), "--KeyId ID"),
        ["SetDeletionProtection"] = ((kms, c, p, _) => kms.SetDeletionProtection(c, p.Required("ProtectedResourceArn"),
            p.RequiredBool("EnableDeletionProtection"), p.Optional("DeletionProtectionDescription")),
            "--ProtectedResourceArn ARN --EnableDeletionProtection true|false [--DeletionProtectionDescription D]"),

        ["CreateAlias"] = ((kms, c, p, _) => kms.CreateAlias(c, p.Required("AliasName"), p.Required("KeyId")), "--AliasName alias/NAME --KeyId ID"),
        ["UpdateAlias"] = ((kms, c, p, _) => kms.UpdateAlias(c, p.Required("AliasName"), p.Required("KeyId")), "--AliasName alias/NAME --KeyId ID"),
        ["DeleteAlias"] = ((kms, c, p, _) => kms.DeleteAlias(c, p.Required("AliasName")), "--AliasName alias/NAME"),
        ["ListAliases"] = ((kms, c, p, w) => WriteAliases(w, kms.ListAliases(c, p.PageNumber, p.PageSize)), "[--PageNumber N] [--PageSize N]"),
        ["ListAliasesByKeyId"] = ((kms, c, p, w) => WriteAliases(w, kms.ListAliasesByKeyId(c, p.Required("KeyId"), p.PageNumber, p.PageSize)),
            "--KeyId ID [--PageNumber N] [--PageSize N]"),

        ["TagResource"] = ((kms, c, p, _) => kms.TagResource(c, p.Required("KeyId"), p.Tags("Tags")),
            "--KeyId ID --Tags '[{\"TagKey\":\"k\",\"TagValue\":\"v\"}]'"),
        ["UntagResource"] = ((kms, c, p, _) => kms.UntagResource(c, p.Required("KeyId"), p.StringList("TagKeys")), "--KeyId ID --TagKeys '[\"k\"]'"),
        ["ListResourceTags"] = ((kms, c, p, w) =>
        {
            var tags = kms.ListResourceTags(c, p.Required("KeyId"));
            w.WriteStartObject("Tags");
            w.WriteStartArray("Tag");
            foreach (var t in tags)
            {
                w.WriteStartObject();
                w.WriteString("KeyId", t.KeyId);
                w.WriteString("TagKey", t.TagKey);
                w.WriteString("TagValue", t.TagValue);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }, "--KeyId ID"),

        ["CreateKeyVersion"] = ((kms, c, p, w) =>
        {
            w.WritePropertyName("KeyVersion");
            WriteVersion(w, kms.CreateKeyVersion(c, p.Required("KeyId")));
        }, "--KeyId ID"),
        ["ListKeyVersions"] = ((kms, c, p, w) =>
            WriteList(w, "KeyVersions", "KeyVersion", kms.ListKeyVersions(c, p.Required("KeyId"), p.PageNumber, p.PageSize), WriteVersionFields),
            "--KeyId ID [--PageNumber N] [--PageSize N]"),
        ["DescribeKeyVersion"] = ((kms, c, p, w) =>
        {
            w.WritePropertyName("KeyVersion");
            WriteVersion(w, kms.DescribeKeyVersion(c, p.Required("KeyId"), p.Required("KeyVersionId")));
        }, "--KeyId ID --KeyVersionId VID"),
        ["UpdateRotationPolicy"] = ((kms, c, p, _) =>
        {
            var enable = p.RequiredBool("EnableAutomaticRotation");
            var interval = p.Optional("RotationInterval") is { } text ? KeyIdentifiers.ParseInterval(text, "RotationInterval") : (TimeSpan?)null;
            kms.UpdateRotationPolicy(c, p.Required("KeyId"), enable, interval);
        }, "--KeyId ID --EnableAutomaticRotation true|false [--RotationInterval 7d..365d]"),

        ["GetParametersForImport"] = ((kms, c, p, w) =>
        {
            var parameters = kms.GetParametersForImport(c, p.Required("KeyId"), p.Required("WrappingAlgorithm"), p.Required("WrappingKeySpec"));
            w.WriteString("KeyId", parameters.KeyId);
            w.WriteString("ImportToken", parameters.ImportToken);
            w.WriteBase64String("PublicKey", parameters.PublicKey);
            WriteDate(w, "TokenExpireTime", parameters.TokenExpireTime);
        }, "--KeyId ID --WrappingAlgorithm RSAES_OAEP_SHA_256|RSAES_OAEP_SHA_1 --WrappingKeySpec RSA_2048|RSA_3072"),
        ["ImportKeyMaterial"] = ((kms, c, p, _) =>
        {
            byte[] encrypted;
            try
            {
                encrypted = Convert.FromBase64String(p.Required("EncryptedKeyMaterial"));
            }
            catch (FormatException)
            {
                throw KmsErrors.InvalidParameter("EncryptedKeyMaterial", "it must be Base64-encoded.");
            }

            kms.ImportKeyMaterial(c, p.Required("KeyId"), encrypted, p.Required("ImportToken"), p.OptionalLong("KeyMaterialExpireUnix"));
        }, "--KeyId ID --EncryptedKeyMaterial BASE64 --ImportToken TOKEN [--KeyMaterialExpireUnix SECONDS]"),
        ["DeleteKeyMaterial"] = ((kms, c, p, _) => kms.DeleteKeyMaterial(c, p.Required("KeyId")), "--KeyId ID"),

        ["Encrypt"] = ((kms, c, p, w) =>
        {
            using var plaintext = DecodeSecret(p.Required("Plaintext"), "Plaintext");
            WriteCiphertext(w, kms.Encrypt(c, p.Required("KeyId"), plaintext.Span, p.Context("EncryptionContext")));
        }, "--KeyId ID --Plaintext BASE64 [--EncryptionContext JSON]"),
        ["Decrypt"] = ((kms, c, p, w) =>
        {
            using var result = kms.Decrypt(c, DecodeBlob(p.Required("CiphertextBlob")), p.Context("EncryptionContext"));
            w.WriteString("KeyId", result.KeyId);
            w.WriteString("KeyVersionId", result.KeyVersionId);
            w.WriteBase64String("Plaintext", result.Plaintext.Span);
        }, "--CiphertextBlob BASE64 [--EncryptionContext JSON]"),
        ["GenerateDataKey"] = ((kms, c, p, w) =>
        {
            using var dataKey = kms.GenerateDataKey(c, p.Required("KeyId"), DataKeyLength(p), p.Context("EncryptionContext"));
            w.WriteString("KeyId", dataKey.KeyId);
            w.WriteString("KeyVersionId", dataKey.KeyVersionId);
            w.WriteBase64String("CiphertextBlob", dataKey.CiphertextBlob);
            w.WriteBase64String("Plaintext", dataKey.Plaintext.Span);
        }, "--KeyId ID [--KeySpec AES_256|AES_128] [--NumberOfBytes 1..1024] [--EncryptionContext JSON]"),
        ["GenerateDataKeyWithoutPlaintext"] = ((kms, c, p, w) =>
            WriteCiphertext(w, kms.GenerateDataKeyWithoutPlaintext(c, p.Required("KeyId"), DataKeyLength(p), p.Context("EncryptionContext"))),
            "--KeyId ID [--KeySpec AES_256|AES_128] [--NumberOfBytes 1..1024] [--EncryptionContext JSON]"),
        ["ReEncrypt"] = ((kms, c, p, w) =>
            WriteCiphertext(w, kms.ReEncrypt(c, DecodeBlob(p.Required("CiphertextBlob")), p.Required("DestinationKeyId"),
                p.Context("SourceEncryptionContext"), p.Context("DestinationEncryptionContext"))),
            "--CiphertextBlob BASE64 --DestinationKeyId ID [--SourceEncryptionContext JSON] [--DestinationEncryptionContext JSON]"),
    };

    private static int DataKeyLength(ActionParameters p)
    {
        var bytes = p.OptionalInt("NumberOfBytes", 1, 1024);
        if (bytes is not null)
        {
            return bytes.Value;
        }

        return p.Optional("KeySpec") switch
        {
            null or "AES_256" => 32,
            "AES_128" => 16,
            _ => throw KmsErrors.InvalidParameter("KeySpec", "use AES_256 or AES_128, or give NumberOfBytes."),
        };
    }

    private static SecretBuffer DecodeSecret(string base64, string name)
    {
        var buffer = new SecretBuffer((base64.Length * 3 / 4) + 3);
        if (!Convert.TryFromBase64String(base64, buffer.Span, out var written))
        {
            buffer.Dispose();
            throw KmsErrors.InvalidParameter(name, "it must be Base64-encoded.");
        }

        try
        {
            return SecretBuffer.CopyFrom(buffer.Span[..written]);
        }
        finally
        {
            buffer.Dispose();
        }
    }

    private static byte[] DecodeBlob(string base64)
    {
        try
        {
            return Convert.FromBase64String(base64);
        }
        catch (FormatException)
        {
            throw KmsErrors.InvalidCiphertext();
        }
    }

    private static string FilterValue(KeyMetadata m, string key) => key switch
    {
        "KeyState" => m.KeyState,
        "KeySpec" => m.KeySpec,
        "KeyUsage" => m.KeyUsage,
        "ProtectionLevel" => m.ProtectionLevel,
        "CreatorType" => m.IsServiceKey ? "Service" : "User",
        "DKMSInstanceId" => m.DKMSInstanceId ?? "",
        _ => throw UnknownFilterKey(key),
    };

    private static readonly HashSet<string> FilterKeys = new(StringComparer.Ordinal)
    {
        "KeyState", "KeySpec", "KeyUsage", "ProtectionLevel", "CreatorType", "DKMSInstanceId",
    };

    private static KmsException UnknownFilterKey(string key) => KmsErrors.InvalidParameter("Filters",
        $"unknown filter key '{key}'; use KeyState, KeySpec, KeyUsage, ProtectionLevel, CreatorType or DKMSInstanceId.");

    private static void WriteCiphertext(Utf8JsonWriter w, CiphertextResult result)
    {
        w.WriteString("KeyId", result.KeyId);
        w.WriteString("KeyVersionId", result.KeyVersionId);
        w.WriteBase64String("CiphertextBlob", result.CiphertextBlob);
    }

    private static void WriteMetadata(Utf8JsonWriter w, KeyMetadata m, bool describe)
    {
        w.WriteStartObject("KeyMetadata");
        w.WriteString("KeyId", m.KeyId);
        w.WriteString("Arn", m.Arn);
        w.WriteString("Description", m.Description);
        w.WriteString("KeySpec", m.KeySpec);
        w.WriteString("KeyUsage", m.KeyUsage);
        w.WriteString("Origin", m.Origin);
        w.WriteString("ProtectionLevel", m.ProtectionLevel);
        w.WriteString("Creator", m.Creator);
        WriteDate(w, "CreationDate", m.CreationDate);
        w.WriteString("KeyState", m.KeyState);
        w.WriteString("PrimaryKeyVersion", m.PrimaryKeyVersion ?? "");
        if (describe)
        {
            w.WriteString("DeletionProtection", m.DeletionProtection ? "Enabled" : "Disabled");
            if (m.DeletionProtectionDescription is not null)
            {
                w.WriteString("DeletionProtectionDescription", m.DeletionProtectionDescription);
            }
        }

        WriteDate(w, "DeleteDate", m.DeleteDate);
        w.WriteString("AutomaticRotation", m.AutomaticRotation);
        if (m.RotationInterval is { } interval)
        {
            w.WriteString("RotationInterval", KeyIdentifiers.FormatInterval(interval));
        }

        WriteDate(w, "LastRotationDate", m.LastRotationDate);
        WriteDate(w, "NextRotationDate", m.NextRotationDate);
        WriteDate(w, "MaterialExpireTime", m.MaterialExpireTime);
        if (m.DKMSInstanceId is not null)
        {
            w.WriteString("DKMSInstanceId", m.DKMSInstanceId);
        }

        w.WriteEndObject();
    }

    private static void WriteAliases(Utf8JsonWriter w, Page<AliasInfo> page) => WriteList(w, "Aliases", "Alias", page, (w, a) =>
    {
        w.WriteString("AliasName", a.AliasName);
        w.WriteString("AliasArn", a.AliasArn);
        w.WriteString("KeyId", a.KeyId);
    });

    private static void WriteVersion(Utf8JsonWriter w, KeyVersionInfo v)
    {
        w.WriteStartObject();
        WriteVersionFields(w, v);
        w.WriteEndObject();
    }

    private static void WriteVersionFields(Utf8JsonWriter w, KeyVersionInfo v)
    {
        w.WriteString("KeyId", v.KeyId);
        w.WriteString("KeyVersionId", v.KeyVersionId);
        WriteDate(w, "CreationDate", v.CreationDate);
    }

    // Alibaba wraps lists twice ({"Keys":{"Key":[...]}}) and adds the paging fields beside them.
    private static void WriteList<T>(Utf8JsonWriter w, string outer, string inner, Page<T> page, Action<Utf8JsonWriter, T> writeItem)
    {
        w.WriteStartObject(outer);
        w.WriteStartArray(inner);
        foreach (var item in page.Items)
        {
            w.WriteStartObject();
            writeItem(w, item);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteNumber("TotalCount", page.TotalCount);
        w.WriteNumber("PageNumber", page.PageNumber);
        w.WriteNumber("PageSize", page.PageSize);
    }

    private static void WriteDate(Utf8JsonWriter w, string name, DateTimeOffset? value)
    {
        if (value is { } d)
        {
            w.WriteString(name, d.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture));
        }
    }
}
