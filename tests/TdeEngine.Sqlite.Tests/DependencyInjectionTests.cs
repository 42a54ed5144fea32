using System.Text;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using TdeEngine.Kms.Envelope;
using TdeEngine.Kms.Secrets;
using TdeEngine.Storage.Keys;

namespace TdeEngine.Sqlite.Tests;

/// <summary>AddTdeSqlite: an app wired through a service container opens sealed databases by connection string alone.</summary>
public sealed class DependencyInjectionTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose()
    {
        TdeTestEnvironment.EnsureRegistered();
        _dir.Dispose();
    }

    [Fact]
    public async Task Starting_the_host_services_registers_the_VFS_with_the_configured_options()
    {
        var counting = new CountingKeys(new Storage.Keys.KmsDataKeyProvider(TdeTestEnvironment.Kms));
        var services = new ServiceCollection();
        services.AddTdeSqlite(_ => counting, options =>
        {
            options.TimeProvider = TdeTestEnvironment.Clock;
            options.DekCacheTtl = TimeSpan.FromSeconds(7);
        });
        services.AddSingleton(TdeTestEnvironment.Kms).AddTdeSqlite();   // a second registration adds nothing
        await using var provider = services.BuildServiceProvider();

        var hosted = Assert.Single(provider.GetServices<IHostedService>());
        await hosted.StartAsync(CancellationToken.None);
        Assert.Equal(TimeSpan.FromSeconds(7), provider.GetRequiredService<TdeSqliteRegistration>().Options.DekCacheTtl);

        var path = _dir.File("di.db");
        using (var db = new SqliteConnection($"Data Source={path};Vfs=tde;Pooling=False"))
        {
            db.Open();
            db.Exec("CREATE TABLE notes(text TEXT); INSERT INTO notes VALUES ('wired by the container');");
        }

        Assert.Equal(1, counting.Generated);   // the container's key provider made the DEK
        Assert.DoesNotContain("wired by the container", Encoding.Latin1.GetString(File.ReadAllBytes(path)), StringComparison.Ordinal);
        using var again = new SqliteConnection($"Data Source={path};Vfs=tde;Pooling=False");
        again.Open();
        Assert.Equal("wired by the container", again.Scalar<string>("SELECT text FROM notes"));
    }

    [Fact]
    public void Without_a_host_UseTdeSqlite_registers_it()
    {
        var counting = new CountingKeys(new Storage.Keys.KmsDataKeyProvider(TdeTestEnvironment.Kms));
        using var provider = new ServiceCollection().AddTdeSqlite(_ => counting, o => o.TimeProvider = TdeTestEnvironment.Clock).BuildServiceProvider();
        Assert.Equal(0, counting.Generated);
        provider.UseTdeSqlite();

        using var db = new SqliteConnection($"Data Source={_dir.File("plainhost.db")};Vfs=tde;Pooling=False");
        db.Open();
        db.Exec("CREATE TABLE t(x)");
        Assert.Equal(1, counting.Generated);
    }

    private sealed class CountingKeys(IDataKeyProvider inner) : IDataKeyProvider
    {
        public int Generated { get; private set; }

        public NewDataKey GenerateDataKey(string kmsKeyId, EncryptionContext context)
        {
            Generated++;
            return inner.GenerateDataKey(kmsKeyId, context);
        }

        public SecretBuffer Decrypt(byte[] wrapped, EncryptionContext context) => inner.Decrypt(wrapped, context);
    }
}
