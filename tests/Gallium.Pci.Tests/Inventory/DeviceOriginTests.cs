using System.Runtime.Versioning;
using Gallium.Pci.Host;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Inventory;

/// <summary>A device object names a device on a host: every device read carries its host's identity, and one from another
/// host, or describing another device than this host has at its address, is refused with its own id.</summary>
[SupportedOSPlatform("linux")]
public sealed class DeviceOriginTests : IDisposable
{
    private readonly SimulatedKernel _hostA = SimulatedHosts.Standard(SimulatedHosts.CreateTempRoot());
    private readonly SimulatedKernel _hostB = SimulatedHosts.Amd(SimulatedHosts.CreateTempRoot());

    public void Dispose()
    {
        _hostA.DeleteTree();
        _hostB.DeleteTree();
    }

    private static DeviceInventory Inventory(SimulatedKernel k) => new(k.CreateContext());

    [Fact]
    public void Every_device_and_group_carries_the_name_and_machine_id_of_the_host_it_was_read_on()
    {
        var inventory = Inventory(_hostA);
        Assert.Equal(new HostId(_hostA.HostName, _hostA.MachineId), inventory.Host);
        Assert.All(inventory.ReadAll(), d => Assert.Equal(inventory.Host, d.Host));
        Assert.All(inventory.ReadGroups(), g => Assert.Equal(inventory.Host, g.Host));
        Assert.NotEqual(inventory.Host.MachineId, Inventory(_hostB).Host.MachineId);
    }

    [Fact]
    public void A_device_read_here_is_this_hosts()
    {
        var inventory = Inventory(_hostA);
        DeviceOrigin.Check(inventory.Read(PciAddress.Parse(StandardHost.FreeNic))!, inventory);
        DeviceOrigin.Check(inventory.ReadGroup(inventory.Read(PciAddress.Parse(StandardHost.Gpu))!.IommuGroup!.Value)!, inventory);
    }

    [Fact]
    public void A_device_from_another_host_is_refused_naming_that_host_and_the_Address_way_out()
    {
        var fromB = Inventory(_hostB).Read(PciAddress.Parse(StandardHost.FreeNic))!;   // the same NIC model, same slot
        var e = Assert.Throws<PciDeviceNotOnThisHostException>(() => DeviceOrigin.Check(fromB, Inventory(_hostA)));
        Assert.Equal(("PciDeviceNotOnThisHost", ErrorKind.InvalidArgument, StandardHost.FreeNic), (e.ErrorId, e.Kind, e.Target));
        Assert.Contains(_hostB.HostName, e.Message);
        Assert.Contains(_hostA.HostName, e.Message);
        Assert.Contains($"Invoke-Command -HostName {_hostB.HostName}", e.RecommendedAction);
        Assert.Contains($"-Address {StandardHost.FreeNic}", e.RecommendedAction);
    }

    [Fact]
    public void An_object_that_does_not_say_its_host_is_still_refused_when_this_host_has_another_device_at_that_address()
    {
        var inventory = Inventory(_hostA);
        var nic = inventory.Read(PciAddress.Parse(StandardHost.FreeNic))!;
        var mellanox = nic with { Host = null, VendorId = 0x15b3, DeviceId = 0x101b, VendorName = "Mellanox Technologies", DeviceName = "MT28908 Family [ConnectX-6]" };
        var e = Assert.Throws<PciDeviceNotOnThisHostException>(() => DeviceOrigin.Check(mellanox, inventory));
        Assert.Contains("[8086:10d3]", e.Message);
        Assert.Contains("not [15b3:101b]", e.Message);
        DeviceOrigin.Check(nic with { Host = null }, inventory);   // an old export of the very device: fine

        var absent = nic with { Host = null, Address = PciAddress.Parse("0000:ee:00.0") };
        Assert.Contains("no device at that address", Assert.Throws<PciDeviceNotOnThisHostException>(() => DeviceOrigin.Check(absent, inventory)).Message);
    }

    [Theory]
    [InlineData("3d1219c7c4c5404aaa1f6d2a48adfda4\n", "3d1219c7c4c5404aaa1f6d2a48adfda4")]
    [InlineData("3D1219C7C4C5404AAA1F6D2A48ADFDA4", "3d1219c7c4c5404aaa1f6d2a48adfda4")]
    [InlineData("uninitialized\n", null)]
    [InlineData("", null)]
    public void The_machine_id_is_read_as_machine_id_5_defines_it(string content, string? expected)
    {
        string file = Path.Combine(_hostA.RootDirectory, "machine-id-test");
        File.WriteAllText(file, content);
        Assert.Equal(expected, HostIdReader.ReadMachineId(file));
        Assert.Null(HostIdReader.ReadMachineId(file + ".missing"));
    }

    [Theory]
    [InlineData("qemu:///system")]
    [InlineData("qemu:///system?socket=/run/test/libvirt-sock")]
    [InlineData("qemu+unix:///system")]
    [InlineData("test:///default")]
    [InlineData("qemu+ssh://root@hv7.example/system?keyfile=/root/.ssh/id&no_tty=1")]
    public void Libvirt_URIs_are_accepted(string uri) => LibvirtUri.Validate(uri);

    [Theory]
    [InlineData("qemu:///sys tem")]
    [InlineData("qemu:///system\0x")]
    [InlineData("not a uri")]
    [InlineData("system")]
    [InlineData("qemu:system")]
    [InlineData("://nohost")]
    public void A_malformed_URI_is_LibvirtUriInvalid_never_another_hosts_libvirt(string uri)
    {
        var e = Assert.Throws<LibvirtUriInvalidException>(() => LibvirtUri.Validate(uri));
        Assert.Equal(("LibvirtUriInvalid", ErrorKind.InvalidArgument), (e.ErrorId, e.Kind));
        Assert.True(e.IsHostLevel);
        Assert.DoesNotContain('\0', e.Message);
    }

    [Theory]
    [InlineData("qemu:///system", true)]
    [InlineData("qemu:///system?socket=/tmp/s", true)]
    [InlineData("qemu+unix:///system", true)]
    [InlineData("qemu:///session", false)]
    [InlineData("test:///default", false)]
    [InlineData("qemu+ssh://localhost/system", false)]
    [InlineData("lxc:///system", false)]
    public void Only_this_hosts_qemu_system_daemon_is_the_system_libvirt(string uri, bool system) =>
        Assert.Equal(system, LibvirtUri.IsSystem(uri));
}
