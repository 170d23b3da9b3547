using Gallium.Pci.Numa;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Caveats;

/// <summary>NUMA placement of a device against a VM's vCPU pinning and numatune (kubevirt#13926, OpenNebula#7408).</summary>
public sealed class NumaPlacementTests : SimulatedHostsTest
{
    private static readonly NumaTopology TwoNodes = NumaTopology.FromNodes(new Dictionary<int, IReadOnlyList<int>>
    {
        [0] = [0, 1, 2, 3], [1] = [4, 5, 6, 7],
    });

    private static string Domain(string inner, int vcpus = 2) =>
        $"<domain type='kvm'><name>vm</name><memory unit='GiB'>4</memory><vcpu placement='static'>{vcpus}</vcpu>{inner}" +
        "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices/></domain>";

    private static PciDevice Nic(int? node) => new() { Address = PciAddress.Parse("41:00.0"), VendorId = 0x8086, DeviceId = 0x1572, NumaNode = node };

    [Theory]
    [InlineData("0-3,8-11", new[] { 0, 1, 2, 3, 8, 9, 10, 11 })]
    [InlineData("0-7,^3,^5-6", new[] { 0, 1, 2, 4, 7 })]
    [InlineData("5", new[] { 5 })]
    [InlineData(" 1 , 3 ", new[] { 1, 3 })]
    [InlineData("", new int[0])]
    [InlineData("3-1", new int[0])]
    [InlineData("a-b", new int[0])]
    public void Cpu_and_node_lists_parse_as_the_kernel_and_libvirt_write_them(string text, int[] expected) =>
        Assert.Equal(expected, NumaTopology.ParseList(text));

    [Fact]
    public void The_host_topology_is_read_from_sys_devices_system_node()
    {
        var k = Build(HostTopology.Create().NumaNodes("0-3", "4-7"));
        var numa = NumaTopology.Read(k);
        Assert.Equal([0, 1], numa.Nodes);
        Assert.Equal(1, numa.NodeOfCpu(5));
        Assert.Null(numa.NodeOfCpu(8));
        Assert.True(numa.IsMultiNode);
        Assert.Equal(8, System.Text.RegularExpressions.Regex.Matches(k.ReadProc("cpuinfo")!, "^processor", System.Text.RegularExpressions.RegexOptions.Multiline).Count);
        Assert.False(NumaTopology.Read(new Gallium.Pci.Host.LinuxSysfs("/nonexistent")).IsMultiNode);   // no NUMA: one node
    }

    [Theory]
    [InlineData("<cputune><vcpupin vcpu='0' cpuset='0'/><vcpupin vcpu='1' cpuset='1-2'/></cputune>", new[] { 0 }, true)]
    [InlineData("<cputune><vcpupin vcpu='0' cpuset='3-4'/><vcpupin vcpu='1' cpuset='5'/></cputune>", new[] { 0, 1 }, true)]
    [InlineData("<numatune><memory mode='strict' nodeset='1'/></numatune>", new[] { 1 }, true)]
    [InlineData("<numatune><memory mode='strict' nodeset='0'/><memnode cellid='1' mode='strict' nodeset='1'/></numatune>", new[] { 0, 1 }, true)]
    [InlineData("", new int[0], false)]
    public void The_VMs_nodes_come_from_vcpupin_and_numatune(string inner, int[] nodes, bool pinned)
    {
        var vm = VmNumaPlacement.Read(Domain(inner), TwoNodes);
        Assert.Equal(nodes, vm.Nodes);
        Assert.Equal(pinned, vm.IsPinned);
        Assert.False(vm.IsAutomatic);
    }

    [Fact]
    public void The_vcpu_cpuset_covers_vcpus_without_a_vcpupin_and_a_vcpu_left_free_may_run_anywhere()
    {
        string withCpuset = "<domain type='kvm'><name>vm</name><memory>1</memory><vcpu placement='static' cpuset='4-5'>3</vcpu>" +
                            "<cputune><vcpupin vcpu='0' cpuset='0'/></cputune><devices/></domain>";
        Assert.Equal([0, 1], VmNumaPlacement.Read(withCpuset, TwoNodes).Nodes);
        Assert.Equal([0, 1], VmNumaPlacement.Read(Domain("<cputune><vcpupin vcpu='0' cpuset='0'/></cputune>", vcpus: 4), TwoNodes).Nodes);
        string onlyCpuset = "<domain type='kvm'><name>vm</name><memory>1</memory><vcpu cpuset='6-7'>2</vcpu><devices/></domain>";
        Assert.Equal([1], VmNumaPlacement.Read(onlyCpuset, TwoNodes).Nodes);
    }

    [Fact]
    public void Automatic_placement_is_neither_pinned_nor_warned_about()
    {
        string auto = "<domain type='kvm'><name>vm</name><memory>1</memory><vcpu placement='auto'>2</vcpu>" +
                      "<numatune><memory mode='strict' placement='auto'/></numatune><devices/></domain>";
        var vm = VmNumaPlacement.Read(auto, TwoNodes);
        Assert.True(vm.IsAutomatic);
        Assert.False(vm.IsPinned);
        Assert.Null(NumaPlacement.Check("vm", vm, Nic(1), TwoNodes));
    }

    [Fact]
    public void A_device_on_another_node_than_the_pinned_VM_is_a_warning_naming_both()
    {
        var vm = VmNumaPlacement.Read(Domain("<cputune><vcpupin vcpu='0' cpuset='0'/><vcpupin vcpu='1' cpuset='1'/></cputune>" +
                                             "<numatune><memory mode='strict' nodeset='0'/></numatune>"), TwoNodes);
        var c = Assert.IsType<NumaMismatchCaveat>(NumaPlacement.Check("db1", vm, Nic(1), TwoNodes));

        Assert.Equal(CaveatSeverity.Warning, c.Severity);
        Assert.Equal(1, c.DeviceNode);
        Assert.Equal([0], c.VmNodes);
        Assert.Equal("db1", c.VmName);
        Assert.Contains("NUMA node 1, but VM 'db1' is pinned to node 0", c.Reason);
        Assert.Contains("nodeset='1'", c.Remedy);
        Assert.Null(NumaPlacement.Check("db1", vm, Nic(0), TwoNodes));
    }

    [Fact]
    public void An_unpinned_VM_on_a_multi_node_host_is_information_and_nothing_on_a_single_node_or_unknown_node()
    {
        var vm = VmNumaPlacement.Read(Domain(""), TwoNodes);
        var c = Assert.IsType<NumaUnpinnedCaveat>(NumaPlacement.Check("web1", vm, Nic(1), TwoNodes));
        Assert.Equal(CaveatSeverity.Information, c.Severity);
        Assert.Equal([0, 1], c.HostNodes);

        var oneNode = NumaTopology.FromNodes(new Dictionary<int, IReadOnlyList<int>> { [0] = [0, 1] });
        Assert.Null(NumaPlacement.Check("web1", VmNumaPlacement.Read(Domain(""), oneNode), Nic(0), oneNode));
        Assert.Null(NumaPlacement.Check("web1", vm, Nic(null), TwoNodes));
    }
}
