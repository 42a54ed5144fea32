using System.Globalization;
using Microsoft.Extensions.Time.Testing;

namespace TdeEngine.Server.Tests;

/// <summary>
/// The replay guard keeps a hash of each (access key id, nonce) for as long as its request's
/// timestamp is valid, and no longer.
/// </summary>
public sealed class ReplayGuardTests
{
    private readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 11, 29, 12, 0, 0, TimeSpan.Zero));

    private string Stamp(TimeSpan offset) =>
        (_clock.GetUtcNow() + offset).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    [Fact]
    public void A_nonce_is_refused_while_its_timestamp_is_valid_then_forgotten()
    {
        var guard = new ReplayGuard(_clock);
        var stamp = Stamp(TimeSpan.FromMinutes(-14));   // a slow client clock: valid one more minute
        Assert.Null(guard.Check("LTAIa", stamp, "n-1"));
        Assert.Equal("SignatureNonceUsed", guard.Check("LTAIa", stamp, "n-1")?.Code);

        _clock.Advance(TimeSpan.FromSeconds(59));
        Assert.Equal("SignatureNonceUsed", guard.Check("LTAIa", stamp, "n-1")?.Code);

        // Past the window the timestamp refuses the replay; a minute later still (the margin for a
        // concurrent sweep), once that minute has ended, the nonce is dropped at the next sweep.
        _clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal("InvalidTimeStamp.Expired", guard.Check("LTAIa", stamp, "n-1")?.Code);
        Assert.Equal(1, guard.Count);
        _clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Null(guard.Check("LTAIa", Stamp(TimeSpan.Zero), "n-2"));
        Assert.Equal(2, guard.Count);   // n-1 kept to the end of its last minute
        _clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Null(guard.Check("LTAIa", Stamp(TimeSpan.Zero), "n-3"));
        Assert.Equal(2, guard.Count);   // n-1 swept, n-2 and n-3 kept
        Assert.Equal("SignatureNonceUsed", guard.Check("LTAIa", Stamp(TimeSpan.Zero), "n-2")?.Code);
    }

    [Fact]
    public void A_request_stamped_ahead_of_the_server_keeps_its_nonce_until_that_stamp_expires()
    {
        var guard = new ReplayGuard(_clock);
        var stamp = Stamp(TimeSpan.FromMinutes(14));   // a fast client clock
        Assert.Null(guard.Check("LTAIa", stamp, "ahead"));

        // Twenty-eight minutes on, the timestamp is still valid, so the nonce must still be there
        // (sweeps ran in between).
        for (var minute = 0; minute < 28; minute++)
        {
            _clock.Advance(TimeSpan.FromMinutes(1));
            Assert.Null(guard.Check("LTAIa", Stamp(TimeSpan.Zero), "tick-" + minute));
        }

        Assert.Equal("SignatureNonceUsed", guard.Check("LTAIa", stamp, "ahead")?.Code);
    }

    [Fact]
    public void Pairs_that_differ_anywhere_are_different_nonces()
    {
        var guard = new ReplayGuard(_clock);
        var now = Stamp(TimeSpan.Zero);
        var longNonce = new string('x', 4000);   // past the stack buffer: hashed from a rented array
        Assert.Null(guard.Check("ab", now, "c"));
        Assert.Null(guard.Check("a", now, "bc"));
        Assert.Null(guard.Check("a", now, "\uD800"));   // lone surrogates are distinct code units
        Assert.Null(guard.Check("a", now, "\uDC00"));
        Assert.Null(guard.Check("a", now, longNonce));
        Assert.Null(guard.Check("a", now, longNonce + "y"));
        Assert.Equal("SignatureNonceUsed", guard.Check("a", now, new string('x', 4000))?.Code);
        Assert.Equal("SignatureNonceUsed", guard.Check("a", now, "\uDC00")?.Code);
        Assert.Equal(6, guard.Count);
    }
}
