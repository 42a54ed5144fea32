using Dapper;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;

namespace TdeEngine.Sqlite.Tests;

/// <summary>Dapper and EF Core's SQLite provider work unchanged: only the connection string names the VFS.</summary>
public sealed class OrmTests : IDisposable
{
    private readonly DatabaseFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    public sealed record ArtistRow(long ArtistId, string Name);

    [Fact]
    public void Dapper_queries_and_writes_a_TDE_database()
    {
        using var db = _dir.OpenTde("dapper.db");
        Chinook.Load(db);

        var acdc = db.QuerySingle<ArtistRow>("SELECT ArtistId, Name FROM Artist WHERE Name = @name", new { name = "AC/DC" });
        var inserted = db.Execute("INSERT INTO Artist (Name) VALUES (@Name)", new[] { new { Name = "Dapper One" }, new { Name = "Dapper Two" } });
        var albums = db.Query<(string Title, long Tracks)>(
            "SELECT a.Title, count(*) FROM Album a JOIN Track t USING (AlbumId) WHERE a.ArtistId = @id GROUP BY a.AlbumId ORDER BY a.Title",
            new { id = acdc.ArtistId }).ToList();

        Assert.Equal(1, acdc.ArtistId);
        Assert.Equal(2, inserted);
        Assert.Equal(277, db.ExecuteScalar<long>("SELECT count(*) FROM Artist"));
        Assert.Equal([("For Those About To Rock We Salute You", 10L), ("Let There Be Rock", 8L)], albums);
    }

    [Fact]
    public void EF_Core_creates_queries_and_updates_a_TDE_database()
    {
        var connectionString = TdeSqlite.ConnectionString(_dir.File("ef.db"));
        using (var context = new ShopContext(connectionString))
        {
            context.Database.EnsureCreated();
            context.Customers.Add(new Customer { Name = "Ada Lovelace", Orders = [new Order { Total = 18.15m }, new Order { Total = 3.5m }] });
            context.Customers.Add(new Customer { Name = "Grace Hopper", Orders = [new Order { Total = 19.06m }] });
            context.SaveChanges();
        }

        using (var context = new ShopContext(connectionString))
        {
            var totals = context.Customers.OrderBy(c => c.Name)
                .Select(c => new { c.Name, Count = c.Orders.Count, Sum = c.Orders.Sum(o => (double)o.Total) }).ToList();
            Assert.Equal(2, totals.Count);
            Assert.Equal(("Ada Lovelace", 2), (totals[0].Name, totals[0].Count));
            Assert.Equal(21.65, totals[0].Sum, 2);

            var grace = context.Customers.Single(c => c.Name == "Grace Hopper");
            grace.Name = "Rear Admiral Grace Hopper";
            context.SaveChanges();
        }

        using (var context = new ShopContext(connectionString))
        {
            Assert.True(context.Customers.Any(c => c.Name.StartsWith("Rear Admiral")));
        }

        Assert.DoesNotContain("Lovelace", System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(_dir.File("ef.db"))), StringComparison.Ordinal);
        using var plain = new SqliteConnection($"Data Source={_dir.File("ef.db")};Mode=ReadOnly;Pooling=False");
        Assert.Throws<SqliteException>(() =>
        {
            plain.Open();
            plain.Scalar<long>("SELECT count(*) FROM Customers");
        });
    }

    private sealed class ShopContext(string connectionString) : DbContext
    {
        public DbSet<Customer> Customers => Set<Customer>();

        protected override void OnConfiguring(DbContextOptionsBuilder options) => options.UseSqlite(connectionString);
    }

    private sealed class Customer
    {
        public int Id { get; set; }
        public string Name { get; set; } = "";
        public List<Order> Orders { get; set; } = [];
    }

    private sealed class Order
    {
        public int Id { get; set; }
        public decimal Total { get; set; }
    }
}
