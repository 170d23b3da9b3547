using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Tests.Libvirt;

public sealed class AssignmentIndexTests
{
    private static string Xml(params string[] hostAddresses) =>
        "<domain><devices>" + string.Concat(hostAddresses.Select(a => DomainXml.BuildHostdev(PciAddress.Parse(a)))) + "</devices></domain>";

    private static LibvirtDomain Vm(string name, VmState state, params string[] hostAddresses) =>
        new(name, Guid.NewGuid(), state, 0, true, Xml(hostAddresses));

    [Fact]
    public void Indexes_by_host_function_and_by_vm()
    {
        var index = AssignmentIndex.FromDomains(
        [
            Vm("b-stopped", VmState.ShutOff, "0000:01:00.0", "0000:01:00.1"),
            Vm("a-running", VmState.Running, "0000:01:00.0"),
            Vm("idle", VmState.ShutOff),
        ]);

        Assert.Equal(3, index.All.Count);
        Assert.Equal(["a-running", "b-stopped"], index.VmNamesFor(PciAddress.Parse("0000:01:00.0")));
        Assert.Equal(VmState.ShutOff, Assert.Single(index.ForAddress(PciAddress.Parse("0000:01:00.1"))).VmState);
        Assert.Empty(index.ForAddress(PciAddress.Parse("0000:02:00.0")));
        Assert.False(index.IsAssigned(PciAddress.Parse("0000:02:00.0")));
        Assert.Equal(2, index.ForVm("b-stopped").Count);
        Assert.Empty(index.ForVm("idle"));
        Assert.Empty(index.ForVm("B-STOPPED"));
        Assert.Equal(3, index.ForAnyOf([PciAddress.Parse("0000:01:00.0"), PciAddress.Parse("0000:01:00.1"), PciAddress.Parse("0000:01:00.0")]).Count);
    }

    [Fact]
    public void From_a_source_uses_its_assignments()
    {
        var a = new VmPciAssignment { VmName = "v", VmUuid = Guid.NewGuid(), VmState = VmState.Paused, IsPersistent = false, Address = PciAddress.Parse("0000:03:00.0") };
        var index = AssignmentIndex.From(new FixedSource([a]));
        Assert.Same(a, Assert.Single(index.ForAddress(a.Address)));
    }

    private sealed class FixedSource(IReadOnlyList<VmPciAssignment> assignments) : IAssignmentSource
    {
        public IReadOnlyList<VmPciAssignment> GetAssignments() => assignments;
    }
}
