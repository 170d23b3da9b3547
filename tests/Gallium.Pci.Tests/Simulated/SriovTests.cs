using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Simulated;

/// <summary>sriov_numvfs as REFERENCE §3.2 describes it.</summary>
public sealed class SriovTests : StandardHostTest
{
    private string NumVfsPath(string pf) => Dev(pf, "sriov_numvfs");

    [Fact]
    public void ChangingACountOtherThanToZeroIsEbusyAndZeroRemovesTheVfs()
    {
        var vfGroups = StandardHost.SriovVfs.Select(v => Kernel.GroupOf(v)!.Value).ToList();
        WriteFails(Kernel, NumVfsPath(StandardHost.SriovPf), "8", Errnos.EBUSY);
        W(NumVfsPath(StandardHost.SriovPf), "4");  // same count: nothing to do
        W(NumVfsPath(StandardHost.SriovPf), "0\n");
        Assert.Equal("0\n", Kernel.ReadText(NumVfsPath(StandardHost.SriovPf)));
        Assert.All(StandardHost.SriovVfs, v => Assert.False(Kernel.Exists($"bus/pci/devices/{v}")));
        Assert.DoesNotContain(StandardHost.SriovVf0, Kernel.DeviceAddresses);
        Assert.False(Kernel.Exists(Dev(StandardHost.SriovPf, "virtfn0")));
        Assert.All(vfGroups, g => Assert.False(Kernel.Exists($"kernel/iommu_groups/{g}")));
        Assert.False(Kernel.Exists($"bus/pci/drivers/iavf/{StandardHost.SriovVf0}"));
    }

    [Fact]
    public void EnablingCreatesVfsThatProbeTheirDriverAndGetGroups()
    {
        W(NumVfsPath(StandardHost.SriovPf2), "2");
        // X710 PF1: routing id 0x0301 + offset 0x4f -> 03:0a.0, stride 1.
        Assert.Equal("iavf", Kernel.DriverOf("0000:03:0a.0"));
        Assert.Equal("iavf", Kernel.DriverOf("0000:03:0a.1"));
        Assert.Equal(Kernel.DevicePath("0000:03:0a.1"), Kernel.Resolve(Dev(StandardHost.SriovPf2, "virtfn1")));
        Assert.Equal(Kernel.DevicePath(StandardHost.SriovPf2), Kernel.Resolve(Dev("0000:03:0a.0", "physfn")));
        int g0 = Kernel.GroupOf("0000:03:0a.0")!.Value, g1 = Kernel.GroupOf("0000:03:0a.1")!.Value;
        Assert.NotEqual(g0, g1);
        Assert.Equal(["0000:03:0a.0"], Kernel.GroupMembers(g0));
        Assert.Equal(13, Kernel.ReadText(Dev("0000:03:0a.0", "resource"))!.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    public void OutOfRangeGarbageAndNoDriverAreRejected()
    {
        WriteFails(Kernel, NumVfsPath(StandardHost.SriovPf2), "65", Errnos.ERANGE);
        WriteFails(Kernel, NumVfsPath(StandardHost.SriovPf2), "two", Errnos.EINVAL);
        W(Dev(StandardHost.SriovPf2, "driver/unbind"), StandardHost.SriovPf2);
        WriteFails(Kernel, NumVfsPath(StandardHost.SriovPf2), "2", Errnos.ENOENT);
        Assert.Equal(0, Kernel.NumVfs(StandardHost.SriovPf2));
        WriteFails(Kernel, Dev(StandardHost.FreeNic, "sriov_numvfs"), "1", Errnos.ENOENT);  // no such attribute
    }

    [Fact]
    public void UnbindingThePfDriverDisablesItsVfs()
    {
        W(Dev(StandardHost.SriovPf, "driver/unbind"), StandardHost.SriovPf);
        Assert.Equal(0, Kernel.NumVfs(StandardHost.SriovPf));
        Assert.DoesNotContain(StandardHost.SriovVf3, Kernel.DeviceAddresses);
    }

    [Fact]
    public void VfCanGoToVfioAndTheNodeIsItsOwnGroup()
    {
        const string vf = StandardHost.SriovVf2;
        W(Dev(vf, "driver_override"), "vfio-pci");
        W(Dev(vf, "driver/unbind"), vf);
        W("bus/pci/drivers_probe", vf);
        Assert.Equal("vfio-pci", Kernel.DriverOf(vf));
        Assert.True(Kernel.DevExists($"vfio/{Kernel.GroupOf(vf)}"));
        Assert.Equal("iavf", Kernel.DriverOf(StandardHost.SriovVf1));
    }
}
