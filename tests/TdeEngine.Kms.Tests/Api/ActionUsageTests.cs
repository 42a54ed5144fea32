using System.Collections;
using System.Diagnostics.CodeAnalysis;
using TdeEngine.Kms.Api;
using TdeEngine.Kms.Tests.Infrastructure;

namespace TdeEngine.Kms.Tests.Api;

public sealed class ActionUsageTests : IDisposable
{
    private readonly KmsFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public void ParameterNames_reads_every_option_of_a_usage_line()
    {
        Assert.Equal(["CiphertextBlob", "DestinationEncryptionContext", "DestinationKeyId", "SourceEncryptionContext"],
            ActionUsage.ParameterNames("--CiphertextBlob BASE64 --DestinationKeyId ID [--SourceEncryptionContext JSON] [--DestinationEncryptionContext JSON]").Order());
        Assert.Empty(ActionUsage.ParameterNames(""));
    }

    [Theory]
    [InlineData("EncryptionContex", "EncryptionContext")]
    [InlineData("keyid", "KeyId")]
    [InlineData("KeyID", "KeyId")]
    [InlineData("Plaintxt", "Plaintext")]
    [InlineData("Bogus", null)]
    public void Closest_names_the_option_a_typo_meant(string given, string? meant)
    {
        Assert.Equal(meant, ActionUsage.Closest(given, ["KeyId", "Plaintext", "EncryptionContext"]));
    }

    // Every parameter a KMS action reads is named in its usage line, so the CLI, which refuses
    // options outside it, never refuses one the action takes. Each action runs with a plausible value
    // for every parameter name any action takes, and the names it asked for are recorded.
    [Fact]
    public void Every_parameter_an_action_reads_is_in_its_usage_line()
    {
        var api = new KmsApi(_f.Kms);
        var problems = new List<string>();
        foreach (var (action, usage) in KmsApi.Actions)
        {
            var values = PlausibleValues(api, action);
            var recording = new Recording(values);
            using (var response = api.Invoke(_f.Me, action, recording))
            {
                // Each action runs to its end, so it reads all it would (an import needs a real wrapped key).
                if (!response.IsSuccess && action != "ImportKeyMaterial")
                {
                    problems.Add($"{action} failed with {response.ErrorCode}: its reads were not all seen");
                }
            }

            // Again without each parameter it asked for, one at a time: a read made only when another
            // parameter is absent (KeySpec when NumberOfBytes is not given) is seen too.
            var asked = new HashSet<string>(recording.Asked, StringComparer.Ordinal);
            foreach (var name in recording.Asked.Where(values.ContainsKey).ToList())
            {
                var fewer = PlausibleValues(api, action);
                fewer.Remove(name);
                var without = new Recording(fewer);
                using (api.Invoke(_f.Me, action, without))
                {
                }

                asked.UnionWith(without.Asked);
            }

            var undeclared = asked.Except(ActionUsage.ParameterNames(usage)).Order().ToList();
            if (undeclared.Count > 0)
            {
                problems.Add($"{action} reads {string.Join(", ", undeclared)}, which its usage line '{usage}' does not name");
            }
        }

        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    private Dictionary<string, string> PlausibleValues(KmsApi api, string action)
    {
        string Create(params (string, string)[] parameters)
        {
            using var created = api.Invoke(_f.Me, "CreateKey", parameters.ToDictionary(p => p.Item1, p => p.Item2));
            return System.Text.Json.JsonDocument.Parse(created.Body.ToArray()).RootElement.GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
        }

        var keyId = action is "GetParametersForImport" or "ImportKeyMaterial" or "DeleteKeyMaterial" ? Create(("Origin", "EXTERNAL")) : Create();
        var other = Create();
        using var encrypted = api.Invoke(_f.Me, "Encrypt", new Dictionary<string, string> { ["KeyId"] = keyId, ["Plaintext"] = "aGVsbG8=" });
        var blob = encrypted.IsSuccess ? System.Text.Json.JsonDocument.Parse(encrypted.Body.ToArray()).RootElement.GetProperty("CiphertextBlob").GetString()! : "AAAA";
        using var described = api.Invoke(_f.Me, "DescribeKey", new Dictionary<string, string> { ["KeyId"] = keyId });
        var metadata = System.Text.Json.JsonDocument.Parse(described.Body.ToArray()).RootElement.GetProperty("KeyMetadata");
        if (action == "CancelKeyDeletion")
        {
            using var _ = api.Invoke(_f.Me, "ScheduleKeyDeletion", new Dictionary<string, string> { ["KeyId"] = keyId, ["PendingWindowInDays"] = "7" });
        }

        var alias = "alias/usage-" + Guid.NewGuid().ToString("N")[..8];
        if (action is "UpdateAlias" or "DeleteAlias")
        {
            using var _ = api.Invoke(_f.Me, "CreateAlias", new Dictionary<string, string> { ["AliasName"] = alias, ["KeyId"] = other });
        }

        return new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["KeyId"] = keyId, ["DestinationKeyId"] = other, ["Description"] = "d", ["CiphertextBlob"] = blob, ["Plaintext"] = "aGVsbG8=",
            ["EncryptionContext"] = "{}", ["SourceEncryptionContext"] = "{}", ["DestinationEncryptionContext"] = "{}",
            ["KeySpec"] = action == "CreateKey" ? "Aliyun_AES_256" : "AES_256", ["NumberOfBytes"] = "32", ["KeyUsage"] = "ENCRYPT/DECRYPT",
            ["Origin"] = "Aliyun_KMS", ["ProtectionLevel"] = "SOFTWARE", ["EnableAutomaticRotation"] = "true", ["RotationInterval"] = "30d",
            ["Tags"] = """[{"TagKey":"env","TagValue":"test"}]""", ["TagKeys"] = """["env"]""", ["AliasName"] = alias,
            ["PageNumber"] = "1", ["PageSize"] = "10", ["Filters"] = """[{"Key":"KeyState","Values":["Enabled"]}]""",
            ["PendingWindowInDays"] = "7", ["ProtectedResourceArn"] = metadata.GetProperty("Arn").GetString()!, ["EnableDeletionProtection"] = "true",
            ["DeletionProtectionDescription"] = "d", ["KeyVersionId"] = metadata.TryGetProperty("PrimaryKeyVersion", out var primary) ? primary.GetString()! : "none", ["WrappingAlgorithm"] = "RSAES_OAEP_SHA_256",
            ["WrappingKeySpec"] = "RSA_2048", ["EncryptedKeyMaterial"] = "AAAA", ["ImportToken"] = "AAAA", ["KeyMaterialExpireUnix"] = "0",
            ["ProductType"] = "software", ["KeyNum"] = "100", ["Spec"] = "200", ["DKMSInstanceId"] = "", ["KmsInstanceId"] = "",
        };
    }

    // Answers from the values and records every name asked for, present or not.
    private sealed class Recording(IReadOnlyDictionary<string, string> values) : IReadOnlyDictionary<string, string>
    {
        public HashSet<string> Asked { get; } = new(StringComparer.Ordinal);

        public string this[string key] => Ask(key) ? values[key] : throw new KeyNotFoundException(key);

        public IEnumerable<string> Keys => values.Keys;

        public IEnumerable<string> Values => values.Values;

        public int Count => values.Count;

        public bool ContainsKey(string key) => Ask(key);

        public bool TryGetValue(string key, [MaybeNullWhen(false)] out string value) => (Ask(key) & values.TryGetValue(key, out value)) && value is not null;

        public IEnumerator<KeyValuePair<string, string>> GetEnumerator() => values.GetEnumerator();

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

        private bool Ask(string key)
        {
            Asked.Add(key);
            return values.ContainsKey(key);
        }
    }
}
