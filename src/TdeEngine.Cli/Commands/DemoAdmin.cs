using System.Security.Cryptography;
using System.Text.Json;
using TdeEngine.Gateway;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;

namespace TdeEngine.Cli.Commands;

/// <summary>
/// The demo's key administrator: OpenAPI calls as the account's root through the gateway, as
/// <c>tde kms</c> makes them, so RAM decides each one and the audit trail records it (who created,
/// disabled or scheduled the deletion of a key is on record). Not for calls that return a data
/// key: those go through <c>GatewayDataKeyProvider</c>, which decodes it into wiped memory.
/// </summary>
internal sealed class DemoAdmin(KmsGateway gateway, KmsCallContext root)
{
    /// <summary>The account's root, as the demo's administrator calls.</summary>
    public KmsCallContext Root => root;

    /// <summary>Runs <paramref name="action"/> and returns its JSON response; a refusal is thrown as the <see cref="KmsException"/> it answered.</summary>
    public JsonElement Call(string action, params (string Name, string Value)[] parameters)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, value) in parameters)
        {
            values[name] = value;
        }

        using var response = gateway.InvokeKms(root with { RequestId = KmsCallContext.NewRequestId() }, action, values);
        if (!response.IsSuccess)
        {
            throw new KmsException(response.ErrorCode!, response.HttpStatus, response.ErrorMessage ?? response.ErrorCode!);
        }

        var body = response.Body.ToArray();
        try
        {
            using var document = JsonDocument.Parse(body);
            return document.RootElement.Clone();
        }
        finally
        {
            CryptographicOperations.ZeroMemory(body);
        }
    }

    /// <summary>CreateKey with a description; returns the new key's id.</summary>
    public string CreateKey(string description, string? instanceId = null) =>
        Call("CreateKey", instanceId is null ? [("Description", description)] : [("Description", description), ("DKMSInstanceId", instanceId)])
            .GetProperty("KeyMetadata").GetProperty("KeyId").GetString()!;
}
