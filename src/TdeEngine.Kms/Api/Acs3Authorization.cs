namespace TdeEngine.Kms.Api;

/// <summary>The fields of a V3 <c>Authorization</c> header (<see cref="Acs3Signature"/>).</summary>
/// <param name="AccessKeyId">The <c>Credential</c>: the access key id that signed.</param>
/// <param name="SignedHeaders">The lower-case names of the signed headers, as listed.</param>
/// <param name="Signature">The hex signature, as given.</param>
public sealed record Acs3Authorization(string AccessKeyId, IReadOnlyList<string> SignedHeaders, string Signature);
