using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using TdeEngine.Gateway;
using TdeEngine.Kms.Identity;
using TdeEngine.Kms.KeyManagement;
using TdeEngine.Sqlite;
using TdeEngine.Storage;
using TdeEngine.Storage.Keys;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>
/// Registers the TDE VFS in a service collection, so an app (ASP.NET Core, a worker, an EF Core
/// DbContext) only changes its connection string to <c>Data Source=app.db;Vfs=tde</c>.
/// </summary>
/// <example>
/// <code>
/// builder.Services.AddSingleton(kms);
/// builder.Services.AddTdeSqlite(sp => new KmsDataKeyProvider(sp.GetRequiredService&lt;KeyManagementService&gt;()),
///     options => options.DekCacheTtl = TimeSpan.FromMinutes(1));
/// builder.Services.AddDbContext&lt;ShopContext&gt;(o => o.UseSqlite("Data Source=shop.db;Vfs=tde"));
/// </code>
/// In a host the VFS is registered when the host starts; without one, call
/// <see cref="UseTdeSqlite"/> on the built provider before the first connection opens.
/// </example>
public static class TdeSqliteServiceCollectionExtensions
{
    /// <summary>The TDE VFS over the DEKs of <paramref name="keys"/>, with storage options.</summary>
    public static IServiceCollection AddTdeSqlite(this IServiceCollection services, Func<IServiceProvider, IDataKeyProvider> keys,
        Action<TdeStorageOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(keys);
        services.TryAddSingleton(provider =>
        {
            var options = new TdeStorageOptions();
            configure?.Invoke(options);
            return new TdeSqliteRegistration(keys(provider), options);
        });
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, TdeSqliteStartup>());
        return services;
    }

    /// <summary>The TDE VFS over an in-process KMS (resolved from the container), as its default account's root.</summary>
    public static IServiceCollection AddTdeSqlite(this IServiceCollection services, Action<TdeStorageOptions>? configure = null) =>
        services.AddTdeSqlite(provider => new KmsDataKeyProvider(provider.GetRequiredService<KeyManagementService>()), configure);

    /// <summary>
    /// The TDE VFS over the gateway (resolved from the container): every DEK request is authorized
    /// by RAM as <paramref name="caller"/> and audited.
    /// </summary>
    public static IServiceCollection AddTdeSqlite(this IServiceCollection services, Func<KmsCallContext> caller,
        Action<TdeStorageOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(caller);
        return services.AddTdeSqlite(provider => new GatewayDataKeyProvider(provider.GetRequiredService<KmsGateway>(), caller), configure);
    }

    /// <summary>Registers the TDE VFS now (for apps without a host). Idempotent.</summary>
    public static IServiceProvider UseTdeSqlite(this IServiceProvider provider)
    {
        ArgumentNullException.ThrowIfNull(provider);
        _ = provider.GetRequiredService<TdeSqliteRegistration>();
        return provider;
    }
}

/// <summary>The VFS registration made by <see cref="TdeSqliteServiceCollectionExtensions.AddTdeSqlite(IServiceCollection, Func{IServiceProvider, IDataKeyProvider}, Action{TdeStorageOptions}?)"/>.</summary>
public sealed class TdeSqliteRegistration
{
    internal TdeSqliteRegistration(IDataKeyProvider keys, TdeStorageOptions options)
    {
        TdeSqlite.Register(keys, options);
        Options = options;
    }

    /// <summary>The storage options in force.</summary>
    public TdeStorageOptions Options { get; }
}

// Registers the VFS when the host starts, before any request opens a database.
internal sealed class TdeSqliteStartup(TdeSqliteRegistration registration) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _ = registration;
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
