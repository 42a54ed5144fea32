using TdeEngine.Kms.KeyManagement;
using TdeEngine.Kms.Tests.Infrastructure;
using C = TdeEngine.Kms.Errors.KmsErrors.Codes;

namespace TdeEngine.Kms.Tests.KeyManagement;

public sealed class KmsInstanceTests : IDisposable
{
    private readonly KmsFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public void A_software_instance_holds_software_keys()
    {
        var instance = _f.Kms.CreateKmsInstance(_f.Me, "software", 100, 1000);

        var m = _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId });

        Assert.StartsWith("kst-", instance.KmsInstanceId, StringComparison.Ordinal);
        Assert.StartsWith("key-", m.KeyId, StringComparison.Ordinal);
        Assert.Equal(instance.KmsInstanceId, m.DKMSInstanceId);
        Assert.Equal("SOFTWARE", m.ProtectionLevel);
        Assert.Single(_f.Kms.ListKmsInstances(_f.Me).Items);
        KmsFixture.Fails(C.InvalidParameter,
            () => _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId, ProtectionLevel = "HSM" }));
    }

    [Theory]
    [InlineData("cloud", 1000, 1000)]
    [InlineData("software", 99, 1000)]
    [InlineData("software", 100001, 1000)]
    [InlineData("software", 1000, 500)]
    public void Instance_parameters_are_validated(string type, int keyNum, int spec)
    {
        KmsFixture.Fails(C.InvalidParameter, () => _f.Kms.CreateKmsInstance(_f.Me, type, keyNum, spec));
    }

    [Fact]
    public void A_hardware_instance_needs_an_HSM()
    {
        KmsFixture.Fails(C.UnsupportedProtectionLevel, () => _f.Kms.CreateKmsInstance(_f.Me, "hardware"));
    }

    [Fact]
    public void An_unknown_or_foreign_instance_is_not_found()
    {
        var theirs = _f.Kms.CreateKmsInstance(_f.Stranger, "software");

        KmsFixture.Fails(C.InstanceNotFound, () => _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { DKMSInstanceId = "kst-nope" }));
        KmsFixture.Fails(C.InstanceNotFound, () => _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { DKMSInstanceId = theirs.KmsInstanceId }));
    }

    [Fact]
    public void The_key_quota_holds()
    {
        var instance = _f.Kms.CreateKmsInstance(_f.Me, "software", keyNum: 100);
        for (var i = 0; i < 100; i++)
        {
            _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId });
        }

        var e = KmsFixture.Fails(C.KeyQuotaExceeded, () => _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId }));

        Assert.Equal(400, e.HttpStatus);
        Assert.Equal(100, _f.Kms.ListKeys(_f.Me, 1, 100).TotalCount);
        _f.NewKey();   // default keys are outside the instance quota
    }

    [Fact]
    public void The_QPS_spec_throttles_cryptographic_calls_with_429()
    {
        var instance = _f.Kms.CreateKmsInstance(_f.Me, "software", spec: 200);
        var id = _f.Kms.CreateKey(_f.Me, new CreateKeyRequest { DKMSInstanceId = instance.KmsInstanceId }).KeyId;
        var blob = _f.Kms.Encrypt(_f.Me, id, "x"u8).CiphertextBlob;   // call 1 of 200 in this second

        for (var i = 1; i < 200; i++)
        {
            _f.Kms.Decrypt(_f.Me, blob).Dispose();
        }

        var e = KmsFixture.Fails(C.Throttling, () => _f.Kms.Decrypt(_f.Me, blob).Dispose());
        Assert.Equal(429, e.HttpStatus);
        KmsFixture.Fails(C.Throttling, () => _f.Kms.GenerateDataKey(_f.Me, id).Dispose());
        _f.Kms.DescribeKey(_f.Me, id);   // management calls are not throttled

        _f.Time.Advance(TimeSpan.FromMilliseconds(100));   // 20 tokens back
        for (var i = 0; i < 20; i++)
        {
            _f.Kms.GenerateDataKey(_f.Me, id).Dispose();
        }

        KmsFixture.Fails(C.Throttling, () => _f.Kms.GenerateDataKey(_f.Me, id).Dispose());
    }

    [Fact]
    public void Default_keys_are_not_throttled()
    {
        var id = _f.NewKey();

        for (var i = 0; i < 5000; i++)
        {
            _f.Kms.GenerateDataKey(_f.Me, id).Dispose();
        }
    }
}
