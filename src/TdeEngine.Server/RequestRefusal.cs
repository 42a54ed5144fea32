namespace TdeEngine.Server;

/// <summary>
/// A request refused before its access key is looked up (it cannot be read, or lacks what a signed
/// request must carry); the server answers it without an audit event, as it names no caller.
/// </summary>
internal sealed class RequestRefusal(int status, string code, string message) : Exception(message)
{
    public int Status { get; } = status;

    public string Code { get; } = code;
}
