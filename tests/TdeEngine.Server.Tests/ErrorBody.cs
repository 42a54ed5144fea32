using System.Text.Json;

namespace TdeEngine.Server.Tests;

/// <summary>The fields of an Alibaba-shaped error body, <c>{"Code","Message","RequestId","HostId"}</c>.</summary>
internal static class ErrorBody
{
    public static string Code(string body) => Field(body, "Code");

    public static string Message(string body) => Field(body, "Message");

    private static string Field(string body, string name) => JsonDocument.Parse(body).RootElement.GetProperty(name).GetString()!;
}
