namespace TdeEngine.Objects;

/// <summary>The position a <see cref="Stream.Seek"/> asks for, checked as FileStream checks it (IOException before the start).</summary>
internal static class SeekTarget
{
    public static long Of(long offset, SeekOrigin origin, long position, long length, string what)
    {
        var target = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => position + offset,
            SeekOrigin.End => length + offset,
            _ => throw new ArgumentOutOfRangeException(nameof(origin)),
        };
        return target >= 0 ? target : throw new IOException($"Cannot seek before the start of the {what}.");
    }
}
