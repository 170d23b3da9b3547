using System.Xml.Linq;
using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Tests.Libvirt;

/// <summary>Hostdev edits of stopped VMs against the real libvirtd, with host addresses that do not exist on this host
/// (a CONFIG attach does not check the host, REFERENCE §1 / §5.2).</summary>
[Collection(LibvirtdCollection.Name)]
public sealed class LibvirtHostdevTests(LibvirtdFixture fixture)
{
    private static readonly PciAddress Absent = PciAddress.Parse("0000:ee:00.0");

    [Fact]
    public void Attach_to_config_shows_in_inactive_xml_and_detach_removes_it()
    {
        using var vm = TestVm.Define(fixture, "attach");
        var libvirt = fixture.Libvirt;

        libvirt.AttachDeviceToConfig(vm.Name, DomainXml.BuildHostdev(Absent));

        var domain = libvirt.GetDomain(vm.Name);
        var hostdev = Assert.Single(DomainXml.ReadPciHostdevs(domain.Xml));
        Assert.Equal(Absent, hostdev.Address);
        Assert.False(hostdev.Managed);
        Assert.NotNull(hostdev.GuestAddress);   // libvirt assigned one (REFERENCE §5.2)
        var assignment = Assert.Single(AssignmentIndex.FromDomains(libvirt.ListDomains()).ForAddress(Absent), a => a.VmName == vm.Name);
        Assert.Equal(VmState.ShutOff, assignment.VmState);
        Assert.True(assignment.IsPersistent);
        Assert.Equal(hostdev.GuestAddress!.Value.ToString(), assignment.GuestAddress);

        libvirt.DetachDeviceFromConfig(vm.Name, DomainXml.BuildDetach(domain.Xml, Absent));

        Assert.Empty(DomainXml.ReadPciHostdevs(libvirt.GetDomain(vm.Name).Xml));
    }

    [Fact]
    public void Duplicate_attach_is_code_55_InvalidOperation()
    {
        using var vm = TestVm.Define(fixture, "dup");
        fixture.Libvirt.AttachDeviceToConfig(vm.Name, DomainXml.BuildHostdev(Absent));
        var e = Assert.Throws<LibvirtOperationFailedException>(() => fixture.Libvirt.AttachDeviceToConfig(vm.Name, DomainXml.BuildHostdev(Absent, managed: true)));
        Assert.Equal("LibvirtOperationFailed", e.ErrorId);
        Assert.Equal(LibvirtErrorCode.OperationInvalid, e.Code);
        Assert.Equal(LibvirtErrorDomain.Qemu, e.ErrorDomain);
        Assert.Equal(ErrorKind.InvalidOperation, e.Kind);
        Assert.Contains("already", e.LibvirtMessage, StringComparison.Ordinal);
    }

    [Fact]
    public void Detach_of_a_missing_device_is_code_99_ObjectNotFound()
    {
        using var vm = TestVm.Define(fixture, "missing");
        var e = Assert.Throws<LibvirtOperationFailedException>(() => fixture.Libvirt.DetachDeviceFromConfig(vm.Name, DomainXml.BuildDetach(Absent)));
        Assert.Equal(LibvirtErrorCode.DeviceMissing, e.Code);
        Assert.Equal(ErrorKind.ObjectNotFound, e.Kind);
    }

    [Fact]
    public void Minimal_detach_with_only_the_source_address_matches_a_hostdev_with_a_guest_address()
    {
        using var vm = TestVm.Define(fixture, "detach-min");
        fixture.Libvirt.AttachDeviceToConfig(vm.Name, DomainXml.BuildHostdev(Absent, managed: true));
        fixture.Libvirt.DetachDeviceFromConfig(vm.Name, DomainXml.BuildDetach(Absent));
        Assert.Empty(DomainXml.ReadPciHostdevs(fixture.Libvirt.GetDomain(vm.Name).Xml));
    }

    [Fact]
    public void Multi_function_device_lands_in_one_guest_slot_on_a_free_root_port()
    {
        using var vm = TestVm.Define(fixture, "multifn");
        var functions = new[] { PciAddress.Parse("0000:ee:00.1"), PciAddress.Parse("0000:ee:00.0") };

        var plan = DomainXml.PlanAttach(vm.Domain.Xml, functions);
        foreach (var xml in plan.DeviceXml) fixture.Libvirt.AttachDeviceToConfig(vm.Name, xml);

        Assert.False(plan.AddsRootPort);   // a fresh q35 definition has a spare root port
        var xmlAfter = fixture.Libvirt.GetDomain(vm.Name).Xml;
        var hostdevs = DomainXml.ReadPciHostdevs(xmlAfter).OrderBy(h => h.Address).ToList();
        Assert.Equal(functions.Order(), hostdevs.Select(h => h.Address));
        Assert.All(hostdevs, h => Assert.Equal(plan.GuestSlot!.Value.SlotFunction0, h.GuestAddress!.Value.SlotFunction0));
        Assert.Equal(new byte[] { 0, 1 }, hostdevs.Select(h => h.GuestAddress!.Value.Function));
        AssertMultifunctionOnFunction0(xmlAfter, plan.GuestSlot!.Value);
        AssertBusIsRootPort(xmlAfter, plan.GuestSlot!.Value.Bus);
    }

    [Fact]
    public void Multi_function_device_gets_a_new_root_port_when_none_is_free()
    {
        using var vm = TestVm.Define(fixture, "multifn-full");
        // Fill every free root port with a single-function hostdev first.
        for (int i = 0; ; i++)
        {
            var xml = fixture.Libvirt.GetDomain(vm.Name).Xml;
            var probe = DomainXml.PlanAttach(xml, [PciAddress.Parse("0000:ed:00.0"), PciAddress.Parse("0000:ed:00.1")]);
            if (probe.AddsRootPort) break;
            Assert.True(i < 32, "the free-root-port search never ran out");
            var filler = new PciAddress(0, 0xec, (byte)i, 0);
            fixture.Libvirt.AttachDeviceToConfig(vm.Name, DomainXml.BuildHostdev(filler, guest: probe.GuestSlot));
        }

        var before = fixture.Libvirt.GetDomain(vm.Name).Xml;
        var plan = DomainXml.PlanAttach(before, [PciAddress.Parse("0000:ee:00.0"), PciAddress.Parse("0000:ee:00.1"), PciAddress.Parse("0000:ee:00.3")]);
        Assert.True(plan.AddsRootPort);
        Assert.Equal(4, plan.DeviceXml.Count);
        foreach (var xml in plan.DeviceXml) fixture.Libvirt.AttachDeviceToConfig(vm.Name, xml);

        var after = fixture.Libvirt.GetDomain(vm.Name).Xml;
        AssertBusIsRootPort(after, plan.GuestSlot!.Value.Bus);
        AssertMultifunctionOnFunction0(after, plan.GuestSlot!.Value);
        var mine = DomainXml.ReadPciHostdevs(after).Where(h => h.Address.Bus == 0xee).OrderBy(h => h.Address).ToList();
        Assert.Equal(new byte[] { 0, 1, 3 }, mine.Select(h => h.GuestAddress!.Value.Function));
        // The whole definition is still valid for libvirt: redefining it unchanged is accepted.
        fixture.Libvirt.DefineDomain(after);
    }

    [Fact]
    public void Detach_with_the_verbatim_definition_removes_one_function_of_a_multi_function_device()
    {
        using var vm = TestVm.Define(fixture, "detach-mf");
        var plan = DomainXml.PlanAttach(vm.Domain.Xml, [PciAddress.Parse("0000:ee:00.0"), PciAddress.Parse("0000:ee:00.1")]);
        foreach (var xml in plan.DeviceXml) fixture.Libvirt.AttachDeviceToConfig(vm.Name, xml);

        var defined = fixture.Libvirt.GetDomain(vm.Name).Xml;
        var detach = DomainXml.BuildDetach(defined, PciAddress.Parse("0000:ee:00.1"));
        Assert.Contains("function=\"0x1\"", detach, StringComparison.Ordinal);
        fixture.Libvirt.DetachDeviceFromConfig(vm.Name, detach);

        var left = Assert.Single(DomainXml.ReadPciHostdevs(fixture.Libvirt.GetDomain(vm.Name).Xml));
        Assert.Equal(PciAddress.Parse("0000:ee:00.0"), left.Address);
    }

    [Fact]
    public void Multi_function_device_on_i440fx_uses_a_free_bus_0_slot()
    {
        using var vm = TestVm.Define(fixture, "pc", machine: "pc");
        var plan = DomainXml.PlanAttach(vm.Domain.Xml, [PciAddress.Parse("0000:ee:00.0"), PciAddress.Parse("0000:ee:00.1")]);
        foreach (var xml in plan.DeviceXml) fixture.Libvirt.AttachDeviceToConfig(vm.Name, xml);
        var after = fixture.Libvirt.GetDomain(vm.Name).Xml;
        Assert.Equal(0, plan.GuestSlot!.Value.Bus);
        AssertMultifunctionOnFunction0(after, plan.GuestSlot!.Value);
        Assert.Equal(2, DomainXml.ReadPciHostdevs(after).Count(h => h.GuestAddress!.Value.SlotFunction0 == plan.GuestSlot));
    }

    [Fact]
    public void Assignments_of_stopped_and_running_vms_are_all_reported()
    {
        using var stopped = TestVm.Define(fixture, "assigned-off");
        using var running = TestVm.Define(fixture, "assigned-on");
        var shared = PciAddress.Parse("0000:ee:02.0");
        fixture.Libvirt.AttachDeviceToConfig(stopped.Name, DomainXml.BuildHostdev(shared));
        // Starting with a hostdev fails on a host without an IOMMU (REFERENCE §1), so start first, then edit the definition.
        fixture.Libvirt.StartDomain(running.Name, paused: true);
        fixture.Libvirt.AttachDeviceToConfig(running.Name, DomainXml.BuildHostdev(PciAddress.Parse("0000:ee:03.0")));
        var source = new LibvirtAssignmentSource(fixture.Libvirt);

        var index = AssignmentIndex.From(source);

        Assert.Equal([stopped.Name], index.VmNamesFor(shared).Where(n => n.StartsWith(fixture.Prefix, StringComparison.Ordinal)));
        Assert.True(index.IsAssigned(shared));
        Assert.Contains(index.ForVm(running.Name), a => a.VmState == VmState.Paused && a.Address == PciAddress.Parse("0000:ee:03.0"));
        Assert.Single(index.ForVm(stopped.Name));
    }

    private static void AssertMultifunctionOnFunction0(string domainXml, PciAddress slot)
    {
        var guestAddresses = XDocument.Parse(domainXml).Root!.Element("devices")!.Elements("hostdev")
            .Select(h => h.Elements("address").Single())
            .Where(a => Convert.ToInt32((string)a.Attribute("bus")!, 16) == slot.Bus && Convert.ToInt32((string)a.Attribute("slot")!, 16) == slot.Device)
            .ToList();
        Assert.True(guestAddresses.Count >= 2, $"{guestAddresses.Count} functions in the slot");
        foreach (var a in guestAddresses)
        {
            bool isFunction0 = (string)a.Attribute("function")! == "0x0";
            Assert.Equal(isFunction0 ? "on" : null, (string?)a.Attribute("multifunction"));
        }
    }

    private static void AssertBusIsRootPort(string domainXml, byte bus)
    {
        var controller = XDocument.Parse(domainXml).Root!.Element("devices")!.Elements("controller")
            .Single(c => (string?)c.Attribute("type") == "pci" && (string?)c.Attribute("index") == bus.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal("pcie-root-port", (string?)controller.Attribute("model"));
    }
}
