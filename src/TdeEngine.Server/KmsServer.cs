using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TdeEngine.Audit;
using TdeEngine.Gateway;
using TdeEngine.Kms.Api;
using TdeEngine.Kms.Errors;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Ram;

namespace TdeEngine.Server;

/// <summary>
/// The KMS as a service: Kestrel speaking the Alibaba Cloud KMS RPC API 2016-01-20 (and RAM
/// 2015-05-01, STS 2015-04-01) on <c>/</c>, signed either with RPC signature 1.0 (HMAC-SHA1, the
/// parameters in the query or a form body) or with the V3 signature (ACS3-HMAC-SHA256 in an
/// Authorization header, as the current SDKs send by default; see <see cref="SignedRequestReader"/>),
/// with timestamp and nonce replay protection and JSON responses. Every call goes through
/// <see cref="KmsGateway"/>: RAM decides, the audit trail records.
/// </summary>
public static class KmsServer
{
    /// <summary>The .NET switch that runs socket completions on the socket engine's own threads.</summary>
    public const string InlineSocketCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>
    /// For a process that hosts the server: asks .NET's socket engine to run socket completions on its
    /// epoll threads instead of queueing each to the thread pool. Kestrel's own
    /// <c>UnsafePreferInlineScheduling</c> stays off, and a request blocked in a slow action (a
    /// key-store write waiting for a lock) does not stall other connections (tested with
    /// <c>tde kms serve</c>). Measured: +16–46% audited, signed requests per
    /// second on 2 cores (docs/benchmarks.md). It applies to every socket of the process, so call it
    /// only from a host's entry point, before the first socket is created; a value already in the
    /// environment wins. Returns whether inline completions are on.
    /// </summary>
    public static bool PreferInlineSocketCompletions()
    {
        if (Environment.GetEnvironmentVariable(InlineSocketCompletionsVariable) is { } chosen)
        {
            return chosen == "1";
        }

        Environment.SetEnvironmentVariable(InlineSocketCompletionsVariable, "1");
        return true;
    }

    /// <summary>Builds the web application (not started). The caller owns and disposes the services.</summary>
    public static WebApplication Build(KmsServerOptions options, KeyManagementService kms, RamService ram, IAuditSink audit)
    {
        ArgumentNullException.ThrowIfNull(options);
        // An empty builder: no appsettings.json, environment or command-line configuration, and so no
        // file watcher. The default builders watch the working directory recursively to reload
        // appsettings.json; with $TDE_HOME under it, every audit write woke that watcher (measured:
        // thousands of inotify watches and a wake-up per batch). Configuration from the working
        // directory could also add Kestrel endpoints to a KMS server, which must listen only where told.
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.UseKestrelCore();
        builder.Services.AddRoutingCore();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            kestrel.Limits.MaxRequestHeadersTotalSize = 64 * 1024;
            kestrel.Limits.MaxRequestLineSize = 64 * 1024;
            kestrel.Listen(System.Net.IPAddress.Parse(options.Host), options.Port, listen =>
            {
                if (options.CertificatePath is { } certificate)
                {
                    var password = options.CertificatePasswordVariable is { } variable ? Environment.GetEnvironmentVariable(variable) : null;
                    listen.UseHttps(certificate, password);
                }
            });
        });

        // One server per trail, held from before the nonces are read until the server stops (or is
        // disposed without having started).
        var homeLock = audit is AuditTrail locked ? ServerHomeLock.Acquire(Path.GetDirectoryName(locked.TrailPath)!) : null;
        WebApplication? app = null;
        var gateway = new KmsGateway(kms, ram, audit);
        var replay = new ReplayGuard(kms.Options.TimeProvider);
        try
        {
            if (homeLock is not null)
            {
                builder.Services.AddSingleton(_ => homeLock);
            }

            app = builder.Build();
            if (homeLock is not null)
            {
                app.Services.GetRequiredService<ServerHomeLock>();   // created, so disposed with the app
                app.Lifetime.ApplicationStopped.Register(homeLock.Dispose);
            }

            if (audit is AuditTrail trail)
            {
                // The nonces this server's predecessor accepted within the window are in the trail.
                replay.SeedFrom(trail);
            }
        }
        catch
        {
            // Not built, or built but never returned: the caller cannot stop or dispose it, so the lock
            // is released here, not when a finalizer runs (a retry in this process would be refused).
            (app as IDisposable)?.Dispose();
            homeLock?.Dispose();
            throw;
        }

        app.MapGet("/healthz", () => Results.Text("ok"));
        app.MapGet("/readyz", () =>
        {
            try
            {
                kms.ListKeys(KmsCallContext.ForRoot(kms.Options.DefaultAccountId), 1, 1);
                return Results.Text("ready");
            }
            catch (Exception e) when (e is KmsException or IOException or InvalidOperationException)
            {
                return Results.Text("not ready: the key store is unavailable", statusCode: 503);
            }
        });
        app.MapMethods("/", ["GET", "POST"], context => Handle(context, gateway, ram, replay));

        var timer = kms.Options.TimeProvider.CreateTimer(_ =>
        {
            try
            {
                kms.RunHousekeeping();
            }
            catch (Exception e) when (e is KmsException or IOException)
            {
                // Retried at the next tick.
            }
        }, null, options.HousekeepingInterval, options.HousekeepingInterval);
        app.Lifetime.ApplicationStopping.Register(timer.Dispose);
        return app;
    }

    private static async Task Handle(HttpContext http, KmsGateway gateway, RamService ram, ReplayGuard replay)
    {
        var requestId = KmsCallContext.NewRequestId();
        SignedRequest request;
        try
        {
            request = await SignedRequestReader.ReadAsync(http.Request).ConfigureAwait(false);
        }
        catch (RequestRefusal refusal)
        {
            await WriteError(http, requestId, refusal.Status, refusal.Code, refusal.Message).ConfigureAwait(false);
            return;
        }

        var accessKeyId = request.AccessKeyId;
        var remote = http.Connection.RemoteIpAddress;
        var sourceIp = remote is null ? "127.0.0.1" : (remote.IsIPv4MappedToIPv6 ? remote.MapToIPv4() : remote).ToString();
        async Task Reject(int status, string code, string message)
        {
            await gateway.RecordRejectedAsync(sourceIp, http.Request.Headers.UserAgent.ToString(), requestId, request.Action, accessKeyId,
                request.Parameters, code, message).ConfigureAwait(false);
            await WriteError(http, requestId, status, code, message).ConfigureAwait(false);
        }

        (KmsPrincipal Principal, Kms.Secrets.SecretBuffer Secret)? found;
        try
        {
            // STS keys (from AssumeRole) carry a security token and expire; permanent keys do not.
            found = accessKeyId.StartsWith("STS.", StringComparison.Ordinal)
                ? ram.FindTemporaryAccessKey(accessKeyId, request.SecurityToken)
                : ram.FindAccessKey(accessKeyId);
        }
        catch (KmsException e)
        {
            await Reject(e.HttpStatus, e.Code, e.Message).ConfigureAwait(false);
            return;
        }

        if (found is not { } key)
        {
            await Reject(404, "InvalidAccessKeyId.NotFound", "The AccessKeyId does not exist, or it was deleted. Create one with 'tde ram CreateAccessKey'.").ConfigureAwait(false);
            return;
        }

        string? mismatch;
        using (key.Secret)
        {
            mismatch = request.CheckSignature(key.Secret.Span);
        }

        if (mismatch is not null)
        {
            await Reject(400, "SignatureDoesNotMatch", mismatch).ConfigureAwait(false);
            return;
        }

        if (replay.Check(accessKeyId, request.Timestamp, request.Nonce) is { } stale)
        {
            await Reject(400, stale.Code, stale.Message).ConfigureAwait(false);
            return;
        }

        var caller = new KmsCallContext(key.Principal, sourceIp, requestId, http.Request.Headers.UserAgent.ToString())
        {
            SecureTransport = http.Request.IsHttps,
            SignatureNonce = request.Nonce,
        };
        using var response = request.Version switch
        {
            "2016-01-20" => await gateway.InvokeKmsAsync(caller, request.Action, request.Parameters, accessKeyId: accessKeyId).ConfigureAwait(false),
            "2015-05-01" => await gateway.InvokeRamAsync(caller, request.Action, request.Parameters, accessKeyId: accessKeyId).ConfigureAwait(false),
            "2015-04-01" => await gateway.InvokeStsAsync(caller, request.Action, request.Parameters, accessKeyId: accessKeyId).ConfigureAwait(false),
            _ => ApiResponse.Error(caller, new KmsException("InvalidVersion", 400, $"The Version '{request.Version}' is not supported; use 2016-01-20 (KMS), 2015-05-01 (RAM) or 2015-04-01 (STS).")),
        };
        if (response.ErrorCode is { } code)
        {
            // Every error the server sends has one shape, HostId included, whether the request or the action failed.
            await WriteError(http, response.RequestId, response.HttpStatus, code, response.ErrorMessage ?? "").ConfigureAwait(false);
            return;
        }

        await WriteBody(http, response.HttpStatus, response.Body.ToArray()).ConfigureAwait(false);
    }

    private static Task WriteError(HttpContext http, string requestId, int status, string code, string message)
    {
        var json = System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string>
        {
            ["Code"] = code,
            ["Message"] = message,
            ["RequestId"] = requestId,
            ["HostId"] = http.Request.Host.Host,
        });
        return WriteBody(http, status, Encoding.UTF8.GetBytes(json));
    }

    private static async Task WriteBody(HttpContext http, int status, byte[] body)
    {
        try
        {
            http.Response.StatusCode = status;
            http.Response.ContentType = "application/json;charset=utf-8";
            http.Response.ContentLength = body.Length;
            await http.Response.Body.WriteAsync(body).ConfigureAwait(false);
        }
        finally
        {
            // The body may hold a Base64 data key.
            CryptographicOperations.ZeroMemory(body);
        }
    }
}
