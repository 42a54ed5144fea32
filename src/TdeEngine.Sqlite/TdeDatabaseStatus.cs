using TdeEngine.Storage.Pages;

namespace TdeEngine.Sqlite;

/// <summary>What <c>tde db status</c> reports: the envelope and the page geometry, read without any key.</summary>
public sealed record TdeDatabaseStatus
{
    public required string Path { get; init; }
    public required string DatabaseId { get; init; }
    public required string KmsKeyArn { get; init; }
    public required PageCipherSuite Cipher { get; init; }
    public required int PageSize { get; init; }
    public required int ReservedBytes { get; init; }
    public required long PageCount { get; init; }
    public required uint ActiveDekVersion { get; init; }
    public required ulong EnvelopeSequence { get; init; }

    /// <summary>Every DEK in the envelope, with the seals reserved under it and its limit.</summary>
    public required IReadOnlyList<TdeDekStatus> Deks { get; init; }

    /// <summary>How many pages of the database file each DEK version sealed (read from the page trailers).</summary>
    public required IReadOnlyDictionary<uint, long> PagesPerDekVersion { get; init; }
}

/// <summary>One DEK of a database.</summary>
/// <param name="Version">The DEK version.</param>
/// <param name="Cipher">The cipher suite it seals with.</param>
/// <param name="SealsReserved">Pages sealed under it, rounded up to the reservation persisted in the envelope.</param>
/// <param name="SealLimit">How many pages it may seal (AES-GCM random nonces), or <c>ulong.MaxValue</c>.</param>
/// <param name="NearLimit">True once half the limit is used: rotate the DEK.</param>
public sealed record TdeDekStatus(uint Version, PageCipherSuite Cipher, ulong SealsReserved, ulong SealLimit, bool NearLimit);
