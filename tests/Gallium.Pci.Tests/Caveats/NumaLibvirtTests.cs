using Gallium.Pci.Assignments;
using Gallium.Pci.Host;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Testing;
using Gallium.Pci.Tests.Libvirt;

namespace Gallium.Pci.Tests.Caveats;

/// <summary>NUMA placement read from definitions a real libvirtd stored (and normalised): <c>&lt;vcpu cpuset&gt;</c>,
/// <c>&lt;cputune&gt;&lt;vcpupin&gt;</c>, <c>&lt;numatune&gt;</c>; the host side is a simulated two-node kernel.</summary>
[Collection(LibvirtdCollection.Name)]
public sealed class NumaLibvirtTests(LibvirtdFixture fixture) : IDisposable
{
    private readonly SimulatedKernel _kernel = HostTopology.Create().NumaNodes("0-3", "4-7")
        .RootComplex("00:00.0", 0x8086, 0x3e30, 0x060000, null)
        .RootPort("00:01.0", secondaryBus: 1).Endpoint("01:00.0", 0x8086, 0x10d3, 0x020000, "e1000e").Mem32Bar(0, 128 * 1024).NumaNode(0).OnVfio()
        .RootPort("00:02.0", secondaryBus: 2).Endpoint("02:00.0", 0x8086, 0x10d3, 0x020000, "e1000e").Mem32Bar(0, 128 * 1024).NumaNode(1).OnVfio()
        .Build(SimulatedHosts.CreateTempRoot());
    private readonly List<string> _vms = [];

    public void Dispose()
    {
        foreach (string vm in _vms) fixture.Remove(vm);
        _kernel.DeleteTree();
    }

    private string Define(string tuning, int vcpus = 2, string? vcpuCpuset = null)
    {
        string name = $"g14-{Guid.NewGuid().ToString("n")[..8]}-numa";
        _vms.Add(name);
        fixture.Libvirt.DefineDomain(
            $"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>" +
            $"<vcpu placement='static'{(vcpuCpuset is null ? "" : $" cpuset='{vcpuCpuset}'")}>{vcpus}</vcpu>{tuning}" +
            "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices/></domain>");
        return name;
    }

    private IReadOnlyList<PassthroughCaveat> ForAdd(string vm, string bdf)
    {
        var context = _kernel.CreateContext();
        return new VmDeviceCaveats(fixture.Libvirt, new DeviceInventory(context), context).ForAdd(vm, [PciAddress.Parse(bdf)]);
    }

    [Fact]
    public void A_VM_pinned_to_node_0_by_vcpupin_and_numatune_is_warned_about_a_NIC_on_node_1_and_not_about_one_on_node_0()
    {
        string vm = Define("<cputune><vcpupin vcpu='0' cpuset='0'/><vcpupin vcpu='1' cpuset='1-2'/></cputune>" +
                           "<numatune><memory mode='strict' nodeset='0'/></numatune>");
        Assert.Contains("<vcpupin vcpu='1' cpuset='1-2'/>", fixture.Libvirt.GetDomain(vm).Xml.Replace('"', '\''));   // libvirt kept it

        var far = Assert.IsType<NumaMismatchCaveat>(Assert.Single(ForAdd(vm, "02:00.0")));
        Assert.Equal(1, far.DeviceNode);
        Assert.Equal([0], far.VmNodes);
        Assert.Equal(vm, far.VmName);
        Assert.Empty(ForAdd(vm, "01:00.0"));
    }

    [Fact]
    public void The_vcpu_cpuset_alone_pins_the_VM_and_numatune_memnode_adds_its_node()
    {
        string cpusetOnly = Define("", vcpus: 4, vcpuCpuset: "4-7");
        Assert.IsType<NumaMismatchCaveat>(Assert.Single(ForAdd(cpusetOnly, "01:00.0")));
        Assert.Empty(ForAdd(cpusetOnly, "02:00.0"));

        string both = Define("<cputune><vcpupin vcpu='0' cpuset='0'/></cputune><numatune><memory mode='strict' nodeset='0'/>" +
                             "<memnode cellid='0' mode='strict' nodeset='1'/></numatune>" +
                             "<cpu><numa><cell id='0' cpus='0' memory='64' unit='MiB'/></numa></cpu>", vcpus: 1);
        Assert.Empty(ForAdd(both, "02:00.0"));
    }

    [Fact]
    public void An_unpinned_VM_on_the_two_node_host_gets_information_only()
    {
        string vm = Define("");
        var info = Assert.IsType<NumaUnpinnedCaveat>(Assert.Single(ForAdd(vm, "02:00.0")));
        Assert.Equal(CaveatSeverity.Information, info.Severity);
    }

    [Fact]
    public void Assignments_carry_the_device_node_next_to_the_VMs_nodes()
    {
        string vm = Define("<numatune><memory mode='strict' nodeset='0'/></numatune>");
        fixture.Libvirt.AttachDeviceToConfig(vm, DomainXml.BuildHostdev(PciAddress.Parse("02:00.0")));
        var domains = fixture.Libvirt.ListDomains().Where(d => d.Name == vm).ToArray();

        var a = Assert.Single(VmDeviceCaveats.WithNumaNodes(domains.SelectMany(DomainXml.ReadAssignments).ToArray(), domains, _kernel.CreateContext()));
        Assert.Equal(1, a.DeviceNumaNode);
        Assert.Equal([0], a.VmNumaNodes);
        Assert.True(a.NumaMismatch);
    }
}
