using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Simulated;

/// <summary>driver_override exactly as REFERENCE §3.3.</summary>
public sealed class DriverOverrideTests : StandardHostTest
{
    private string Override => Kernel.ReadText(Dev(StandardHost.FreeNic, "driver_override"))!;

    [Theory]
    [InlineData("vfio-pci", "vfio-pci\n")]
    [InlineData("vfio-pci\n", "vfio-pci\n")]      // echo's trailing newline is cut
    [InlineData("a\nb", "a\n")]                   // cut at the first \n
    [InlineData("ab\0cd", "ab\n")]                // strlen(): an embedded NUL truncates
    [InlineData("none", "none\n")]
    public void WritingStoresTheNameUpToTheFirstNewline(string value, string reads)
    {
        W(Dev(StandardHost.FreeNic, "driver_override"), value);
        Assert.Equal(reads, Override);
    }

    [Theory]
    [InlineData("\n")]
    [InlineData("\nabc")]
    [InlineData("\0")]
    public void NewlineFirstOrEmptyStringClears(string value)
    {
        W(Dev(StandardHost.FreeNic, "driver_override"), "vfio-pci");
        W(Dev(StandardHost.FreeNic, "driver_override"), value);
        Assert.Equal("(null)\n", Override);
        Assert.Null(Kernel.OverrideOf(StandardHost.FreeNic));
    }

    [Fact]
    public void ZeroLengthWriteIsANoOp()
    {
        W(Dev(StandardHost.FreeNic, "driver_override"), "none");
        W(Dev(StandardHost.FreeNic, "driver_override"), "");
        Assert.Equal("none\n", Override);
        Assert.Equal(0, Kernel.Writes[^1].Errno);
    }

    [Fact]
    public void ValuesOfPageSizeMinusOneOrMoreAreRejected()
    {
        WriteFails(Kernel, Dev(StandardHost.FreeNic, "driver_override"), new string('x', 4095), Errnos.EINVAL);
        Assert.Equal("(null)\n", Override);
        W(Dev(StandardHost.FreeNic, "driver_override"), new string('x', 4094));
        Assert.Equal(new string('x', 4094) + "\n", Override);
    }

    [Fact]
    public void SettingTheOverrideDoesNotUnbindAndProbeOfABoundDeviceIsANoOp()
    {
        W(Dev(StandardHost.FreeNic, "driver_override"), "vfio-pci");
        Assert.Equal("e1000e", Kernel.DriverOf(StandardHost.FreeNic));
        W("bus/pci/drivers_probe", StandardHost.FreeNic);
        Assert.Equal("e1000e", Kernel.DriverOf(StandardHost.FreeNic));
        Assert.False(Kernel.DevExists($"vfio/{Kernel.GroupOf(StandardHost.FreeNic)}"));
    }

    [Fact]
    public void OverrideNoneKeepsTheDeviceUnbound()
    {
        W(Dev(StandardHost.FreeNic, "driver_override"), "none");
        W(Dev(StandardHost.FreeNic, "driver/unbind"), StandardHost.FreeNic);
        W("bus/pci/drivers_probe", StandardHost.FreeNic);
        Assert.Null(Kernel.DriverOf(StandardHost.FreeNic));
        // The override also keeps e1000e from binding it explicitly.
        WriteFails(Kernel, "bus/pci/drivers/e1000e/bind", StandardHost.FreeNic, Errnos.ENODEV);
    }

    [Fact]
    public void OverrideNamingADriverThatIsNotLoadedLeavesTheDeviceDriverless()
    {
        W(Dev(StandardHost.FreeNic, "driver_override"), "pci-stub");
        W(Dev(StandardHost.FreeNic, "driver/unbind"), StandardHost.FreeNic);
        W("bus/pci/drivers_probe", StandardHost.FreeNic);
        Assert.Null(Kernel.DriverOf(StandardHost.FreeNic));
        Assert.Null(Kernel.Modules.Load("pci-stub"));  // loading it binds the waiting device
        Assert.Equal("pci-stub", Kernel.DriverOf(StandardHost.FreeNic));
    }
}
