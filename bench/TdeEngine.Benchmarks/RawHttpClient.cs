using System.Buffers.Text;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace TdeEngine.Benchmarks;

/// <summary>
/// A minimal HTTP/1.1 keep-alive client for load generation, in the spirit of <c>wrk</c>: one
/// socket, one request at a time, the request written as bytes and the response read by its
/// Content-Length. It exists so the load generator (which shares this 2-core machine with the
/// server) spends its CPU on sending requests rather than on HttpClient's machinery. It is not a
/// general client: no chunked bodies, no redirects, no TLS.
/// </summary>
internal sealed class RawHttpClient : IDisposable
{
    private readonly Socket _socket;
    private readonly string _host;
    private byte[] _buffer = new byte[16 * 1024];

    private RawHttpClient(Socket socket, string host)
    {
        _socket = socket;
        _host = host;
    }

    public static async Task<RawHttpClient> ConnectAsync(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(endpoint).ConfigureAwait(false);
        return new RawHttpClient(socket, endpoint.ToString());
    }

    /// <summary>Sends <c>GET path</c>; returns the status code.</summary>
    public Task<int> GetAsync(string path) =>
        SendAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: {_host}\r\n\r\n"));

    /// <summary>Sends a form POST to <c>/</c>; returns the status code.</summary>
    public Task<int> PostFormAsync(string form, string path = "/")
    {
        var body = Encoding.ASCII.GetBytes(form);
        var head = Encoding.ASCII.GetBytes(
            $"POST {path} HTTP/1.1\r\nHost: {_host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {body.Length}\r\n\r\n");
        var request = new byte[head.Length + body.Length];
        head.CopyTo(request, 0);
        body.CopyTo(request, head.Length);
        return SendAsync(request);
    }

    private async Task<int> SendAsync(byte[] request)
    {
        await _socket.SendAsync(request, SocketFlags.None).ConfigureAwait(false);
        var filled = 0;
        while (true)
        {
            if (filled == _buffer.Length)
            {
                Array.Resize(ref _buffer, _buffer.Length * 2);
            }

            var read = await _socket.ReceiveAsync(_buffer.AsMemory(filled), SocketFlags.None).ConfigureAwait(false);
            if (read == 0)
            {
                throw new IOException("The server closed the connection.");
            }

            filled += read;
            if (TryParse(_buffer.AsSpan(0, filled), out var status, out var total))
            {
                if (filled > total)
                {
                    throw new IOException("Unexpected bytes after the response (this client does not pipeline).");
                }

                if (filled == total)
                {
                    return status;
                }
            }
        }
    }

    // A complete head: the status and the total length of head plus body.
    private static bool TryParse(ReadOnlySpan<byte> data, out int status, out int total)
    {
        status = 0;
        total = int.MaxValue;
        var end = data.IndexOf("\r\n\r\n"u8);
        if (end < 0)
        {
            return false;
        }

        var head = data[..end];
        if (!Utf8Parser.TryParse(head[9..12], out status, out _))
        {
            throw new IOException("Not an HTTP/1.1 status line.");
        }

        var contentLength = 0;
        foreach (var range in head.Split("\r\n"u8))
        {
            var line = head[range];
            if (line.Length > 15 && Ascii.EqualsIgnoreCase(line[..15], "Content-Length:"u8))
            {
                Utf8Parser.TryParse(line[15..].Trim((byte)' '), out contentLength, out _);
            }
        }

        total = end + 4 + contentLength;
        return true;
    }

    public void Dispose() => _socket.Dispose();
}
