using TdeEngine.Storage.Errors;

namespace TdeEngine.Objects.Tests;

public sealed class ObjectKeyEncodingTests
{
    [Theory]
    [InlineData("a.txt", "a.txt")]
    [InlineData("photos/2024/a b.jpg", "photos%2F2024%2Fa%20b.jpg")]
    [InlineData("../etc/passwd", "%2E.%2Fetc%2Fpasswd")]
    [InlineData("..", "%2E.")]
    [InlineData(".", "%2E")]
    [InlineData(".tde-bucket.json", "%2Etde-bucket.json")]
    [InlineData("é", "%C3%A9")]
    [InlineData("100%", "100%25")]
    public void Encode_percent_encodes_every_byte_outside_the_safe_set_and_a_leading_dot(string key, string fileName)
    {
        Assert.Equal(fileName, ObjectKeyEncoding.Encode(key));
        Assert.Equal(key, ObjectKeyEncoding.Decode(fileName));
    }

    [Theory]
    [InlineData(".tde-bucket.json")]
    [InlineData(".tde-tmp-0123")]
    [InlineData("a%2fb")]      // lower-case hex is not canonical
    [InlineData("%41")]        // "A" spelled encoded
    [InlineData("a%2")]
    [InlineData("a b")]
    [InlineData("%FF")]        // not UTF-8
    public void Decode_returns_null_for_files_that_are_not_canonical_object_names(string fileName)
    {
        Assert.Null(ObjectKeyEncoding.Decode(fileName));
    }

    [Fact]
    public void Encode_refuses_names_whose_file_name_exceeds_255_bytes()
    {
        Assert.Equal(255, ObjectKeyEncoding.Encode(new string('a', 255)).Length);
        var error = Assert.Throws<TdeStorageException>(() => ObjectKeyEncoding.Encode(new string('/', 86)));   // 258 bytes encoded

        Assert.Equal(TdeStorageException.Codes.InvalidObjectName, error.Code);
    }
}
