using TdeEngine.Kms.Identity;

namespace TdeEngine.Kms.Tests;

public class UuidTests
{
    [Fact]
    public void Ids_are_version_4_UUIDs_in_the_requested_case_and_do_not_repeat()
    {
        var lower = Enumerable.Range(0, 10_000).Select(_ => Uuid.NewV4()).ToList();
        Assert.All(lower, id => Assert.Matches("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", id));
        Assert.Equal(lower.Count, lower.Distinct(StringComparer.Ordinal).Count());
        Assert.All(lower.Take(10), id => Assert.Equal(id, Guid.Parse(id).ToString("D")));

        var upper = KmsCallContext.NewRequestId();
        Assert.Matches("^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$", upper);
    }
}
