using System.Xml.Linq;
using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Tests.Libvirt;

public sealed class DomainXmlTests
{
    // Shape of libvirt 9.0's inactive XML of a q35 domain (devices trimmed to what matters).
    private const string Q35 = """
        <domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
          <name>web&lt;1&gt;</name>
          <uuid>71970ef2-94c8-40bb-8433-37ae836bb6db</uuid>
          <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
          <devices>
            <controller type='usb' index='0' model='qemu-xhci'>
              <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
            </controller>
            <controller type='pci' index='0' model='pcie-root'/>
            <controller type='pci' index='1' model='pcie-root-port'>
              <model name='pcie-root-port'/><target chassis='1' port='0x8'/>
              <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0' multifunction='on'/>
            </controller>
            <controller type='pci' index='2' model='pcie-root-port'>
              <model name='pcie-root-port'/><target chassis='2' port='0x9'/>
              <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x1'/>
            </controller>
            <controller type='pci' index='3' model='pcie-root-port'>
              <model name='pcie-root-port'/><target chassis='3' port='0xa'/>
              <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>
            </controller>
            <controller type='pci' index='4' model='pcie-root-port'>
              <model name='pcie-root-port'/><target chassis='4' port='0xb'/>
              <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x3'/>
            </controller>
            <interface type='hostdev' managed='yes'>
              <mac address='52:54:00:6d:90:02'/>
              <source><address type='pci' domain='0x0000' bus='0x3b' slot='0x10' function='0x2'/></source>
              <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
            </interface>
            <hostdev mode='subsystem' type='pci' managed='yes'>
              <source><address domain='0x0000' bus='0x65' slot='0x00' function='0x0'/></source>
              <rom bar='off'/>
              <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
            </hostdev>
            <hostdev mode='subsystem' type='pci'>
              <source><address domain='0x0001' bus='0x0a' slot='0x1f' function='0x7'/></source>
            </hostdev>
            <hostdev mode='subsystem' type='usb'>
              <source><vendor id='0x1234'/><product id='0xbeef'/></source>
            </hostdev>
            <memballoon model='virtio'>
              <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
            </memballoon>
          </devices>
        </domain>
        """;

    [Fact]
    public void Reads_pci_hostdevs_and_hostdev_interfaces_but_not_usb()
    {
        var hostdevs = DomainXml.ReadPciHostdevs(Q35);
        Assert.Equal(
            [
                new PciHostdev(PciAddress.Parse("0000:3b:10.2"), PciAddress.Parse("0000:03:00.0"), Managed: true, IsNetworkInterface: true),
                new PciHostdev(PciAddress.Parse("0000:65:00.0"), PciAddress.Parse("0000:02:00.0"), Managed: true, IsNetworkInterface: false),
                new PciHostdev(PciAddress.Parse("0001:0a:1f.7"), null, Managed: false, IsNetworkInterface: false),
            ],
            hostdevs);
    }

    [Fact]
    public void Assignments_carry_the_vm_identity_and_guest_address_text()
    {
        var domain = new LibvirtDomain("web<1>", Guid.Parse("71970ef2-94c8-40bb-8433-37ae836bb6db"), VmState.Running, 1, true, Q35);
        var a = DomainXml.ReadAssignments(domain);
        Assert.Equal(3, a.Count);
        Assert.All(a, x => Assert.Equal(("web<1>", domain.Uuid, VmState.Running, true), (x.VmName, x.VmUuid, x.VmState, x.IsPersistent)));
        Assert.Equal("0000:02:00.0", a[1].GuestAddress);
        Assert.Null(a[2].GuestAddress);
    }

    [Theory]
    [InlineData("0x1f", 31UL)]
    [InlineData("0X0a", 10UL)]
    [InlineData("31", 31UL)]
    [InlineData("037", 31UL)]   // strtoul base 0: leading zero is octal, as libvirt reads it
    [InlineData("0", 0UL)]
    public void Numbers_are_read_like_libvirt(string text, ulong expected)
    {
        Assert.True(DomainXml.TryNumber(text, out ulong v));
        Assert.Equal(expected, v);
    }

    [Theory]
    [InlineData("")]
    [InlineData("0x")]
    [InlineData("08")]
    [InlineData("-1")]
    [InlineData("ab")]
    public void Bad_numbers_are_rejected(string text) => Assert.False(DomainXml.TryNumber(text, out _));

    [Fact]
    public void Hostdev_with_an_out_of_range_source_is_not_reported()
    {
        string xml = "<domain><devices><hostdev mode='subsystem' type='pci'><source><address domain='0' bus='0x100' slot='0' function='0'/></source></hostdev></devices></domain>";
        Assert.Empty(DomainXml.ReadPciHostdevs(xml));
    }

    [Fact]
    public void Built_hostdev_has_the_libvirt_shape()
    {
        var e = XElement.Parse(DomainXml.BuildHostdev(PciAddress.Parse("0000:65:00.0"), managed: false, guest: PciAddress.Parse("0000:05:00.0"), multifunction: true));
        Assert.Equal("hostdev", e.Name);
        Assert.Equal(("subsystem", "pci", "no"), ((string?)e.Attribute("mode"), (string?)e.Attribute("type"), (string?)e.Attribute("managed")));
        var src = e.Element("source")!.Element("address")!;
        Assert.Equal(("0x0000", "0x65", "0x00", "0x0"), ((string?)src.Attribute("domain"), (string?)src.Attribute("bus"), (string?)src.Attribute("slot"), (string?)src.Attribute("function")));
        Assert.Null(src.Attribute("type"));
        var guest = e.Element("address")!;
        Assert.Equal(("pci", "0x05", "on"), ((string?)guest.Attribute("type"), (string?)guest.Attribute("bus"), (string?)guest.Attribute("multifunction")));
        // Round trip through the reader.
        var read = Assert.Single(DomainXml.ReadPciHostdevs($"<domain><devices>{e}</devices></domain>"));
        Assert.Equal(PciAddress.Parse("0000:65:00.0"), read.Address);
        Assert.Equal(PciAddress.Parse("0000:05:00.0"), read.GuestAddress);
    }

    [Fact]
    public void Single_function_is_placed_like_a_multi_function_one_so_libvirt_adds_no_untagged_root_port()
    {
        var plan = DomainXml.PlanAttach(Q35, [PciAddress.Parse("0000:66:00.0")], managed: true);
        // Every root port of Q35 is in use: Gallium adds one, tagged so Remove can take it out again.
        Assert.True(plan.AddsRootPort);
        var controller = XElement.Parse(plan.DeviceXml[0]);
        Assert.StartsWith(DomainXml.RootPortAliasPrefix, (string?)controller.Element("alias")!.Attribute("name"));
        var e = XElement.Parse(plan.DeviceXml[1]);
        Assert.Equal("yes", (string?)e.Attribute("managed"));
        Assert.Equal(("0x05", "0x00", "0x0"), ((string?)e.Element("address")!.Attribute("bus"), (string?)e.Element("address")!.Attribute("slot"), (string?)e.Element("address")!.Attribute("function")));
        Assert.Null(e.Element("address")!.Attribute("multifunction"));   // one function: not a multi-function slot
        Assert.Equal(PciAddress.Parse("0000:05:00.0"), plan.GuestSlot);
    }

    [Fact]
    public void Single_function_on_a_layout_Gallium_does_not_know_gets_no_guest_address_so_libvirt_chooses()
    {
        var plan = DomainXml.PlanAttach("<domain><name>x</name><devices/></domain>", [PciAddress.Parse("0000:65:00.0")]);
        Assert.Null(XElement.Parse(Assert.Single(plan.DeviceXml)).Element("address"));
        Assert.Null(plan.GuestSlot);
    }

    [Fact]
    public void Unused_Gallium_root_ports_are_found_by_alias_once_their_device_leaves_and_only_then()
    {
        var plan = DomainXml.PlanAttach(Q35, [PciAddress.Parse("0000:66:00.0")]);
        string after = DomainXml.Project(Q35, plan.DeviceXml, []);
        Assert.Empty(DomainXml.UnusedGalliumRootPorts(after, []));
        var port = XElement.Parse(Assert.Single(DomainXml.UnusedGalliumRootPorts(after, [PciAddress.Parse("0000:66:00.0")])));
        Assert.Equal("5", (string?)port.Attribute("index"));
        // libvirt's own root ports are never taken, used or not.
        Assert.Empty(DomainXml.UnusedGalliumRootPorts(Q35, [PciAddress.Parse("0000:65:00.0")]));
    }

    [Fact]
    public void Project_adds_and_removes_devices_by_libvirt_identity_and_tolerates_what_is_already_done()
    {
        string hostdev = DomainXml.BuildHostdev(PciAddress.Parse("0000:66:00.0"));
        string once = DomainXml.Project(Q35, [hostdev], []);
        Assert.Equal(once, DomainXml.Project(once, [hostdev], []));
        Assert.Contains(DomainXml.ReadPciHostdevs(once), h => h.Address == PciAddress.Parse("0000:66:00.0"));
        string gone = DomainXml.Project(once, [], [DomainXml.BuildDetach(PciAddress.Parse("0000:66:00.0"))]);
        Assert.DoesNotContain(DomainXml.ReadPciHostdevs(gone), h => h.Address == PciAddress.Parse("0000:66:00.0"));
        Assert.Equal(gone, DomainXml.Project(gone, [], [DomainXml.BuildDetach(PciAddress.Parse("0000:66:00.0"))]));
    }

    [Fact]
    public void Multi_function_goes_to_the_lowest_root_port_nothing_uses()
    {
        // Buses 1 (usb), 2 (hostdev), 3 (interface) and 4 (balloon) are taken: no free port, so one is added.
        var plan = DomainXml.PlanAttach(Q35, [PciAddress.Parse("0000:81:00.1"), PciAddress.Parse("0000:81:00.0")]);
        Assert.True(plan.AddsRootPort);
        Assert.Equal(PciAddress.Parse("0000:05:00.0"), plan.GuestSlot);
        var controller = XElement.Parse(plan.DeviceXml[0]);
        Assert.Equal(("pci", "5", "pcie-root-port"), ((string?)controller.Attribute("type"), (string?)controller.Attribute("index"), (string?)controller.Attribute("model")));
        Assert.Equal("pcie-root-port", (string?)controller.Element("model")!.Attribute("name"));
        Assert.Equal(("5", "0xc"), ((string?)controller.Element("target")!.Attribute("chassis"), (string?)controller.Element("target")!.Attribute("port")));

        // Without the balloon, port 4 is free and is used; nothing is added.
        var lessBusy = XDocument.Parse(Q35);
        lessBusy.Root!.Element("devices")!.Element("memballoon")!.Remove();
        var plan2 = DomainXml.PlanAttach(lessBusy.ToString(), [PciAddress.Parse("0000:81:00.0"), PciAddress.Parse("0000:81:00.1")]);
        Assert.False(plan2.AddsRootPort);
        Assert.Equal(PciAddress.Parse("0000:04:00.0"), plan2.GuestSlot);
        var guests = plan2.DeviceXml.Select(x => XElement.Parse(x).Element("address")!).ToList();
        Assert.Equal(["0x0", "0x1"], guests.Select(a => (string?)a.Attribute("function")));
        Assert.Equal(["on", null], guests.Select(a => (string?)a.Attribute("multifunction")));
        Assert.All(guests, a => Assert.Equal(("0x04", "0x00"), ((string?)a.Attribute("bus"), (string?)a.Attribute("slot"))));
    }

    [Fact]
    public void Host_function_numbers_are_kept_with_function_0_and_renumbered_without()
    {
        var lessBusy = XDocument.Parse(Q35);
        lessBusy.Root!.Element("devices")!.Element("memballoon")!.Remove();
        string xml = lessBusy.ToString();
        static IEnumerable<string?> Functions(HostdevAttachPlan p) =>
            p.DeviceXml.Select(x => XElement.Parse(x)).Where(e => e.Name == "hostdev").Select(e => (string?)e.Element("address")!.Attribute("function"));

        Assert.Equal(["0x0", "0x1", "0x3"], Functions(DomainXml.PlanAttach(xml, [PciAddress.Parse("81:00.0"), PciAddress.Parse("81:00.3"), PciAddress.Parse("81:00.1")])));
        Assert.Equal(["0x0", "0x1"], Functions(DomainXml.PlanAttach(xml, [PciAddress.Parse("81:00.2"), PciAddress.Parse("81:00.5")])));
    }

    [Fact]
    public void Functions_of_different_devices_are_refused()
    {
        Assert.Throws<ArgumentException>(() => DomainXml.PlanAttach(Q35, [PciAddress.Parse("81:00.0"), PciAddress.Parse("82:00.0")]));
        Assert.Throws<ArgumentException>(() => DomainXml.PlanAttach(Q35, []));
    }

    [Fact]
    public void I440fx_uses_the_lowest_free_slot_of_bus_0_from_3()
    {
        const string pc = """
            <domain><name>old</name><devices>
              <controller type='pci' index='0' model='pci-root'/>
              <controller type='usb' index='0' model='piix3-uhci'><address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/></controller>
              <video><model type='cirrus'/><address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/></video>
              <memballoon model='virtio'><address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></memballoon>
            </devices></domain>
            """;
        var plan = DomainXml.PlanAttach(pc, [PciAddress.Parse("81:00.0"), PciAddress.Parse("81:00.1")]);
        Assert.Equal(PciAddress.Parse("0000:00:04.0"), plan.GuestSlot);
        Assert.False(plan.AddsRootPort);
    }

    [Fact]
    public void Unknown_machine_layout_refuses_instead_of_guessing()
    {
        var e = Assert.Throws<GalliumException>(() =>
            DomainXml.PlanAttach("<domain><name>a&amp;b</name><devices/></domain>", [PciAddress.Parse("81:00.0"), PciAddress.Parse("81:00.1")]));
        Assert.Equal("GuestPciSlotUnavailable", e.ErrorId);
        Assert.Equal(ErrorKind.ResourceUnavailable, e.Kind);
        Assert.Equal("a&b", e.Target);
    }

    [Fact]
    public void Detach_xml_is_the_defined_element_verbatim_or_the_source_address()
    {
        var defined = XElement.Parse(DomainXml.BuildDetach(Q35, PciAddress.Parse("0000:65:00.0")));
        Assert.Equal("off", (string?)defined.Element("rom")!.Attribute("bar"));
        Assert.Equal("yes", (string?)defined.Attribute("managed"));
        Assert.NotNull(defined.Element("address"));

        var iface = XElement.Parse(DomainXml.BuildDetach(Q35, PciAddress.Parse("0000:3b:10.2")));
        Assert.Equal("interface", iface.Name);
        Assert.Equal("52:54:00:6d:90:02", (string?)iface.Element("mac")!.Attribute("address"));

        var minimal = XElement.Parse(DomainXml.BuildDetach(Q35, PciAddress.Parse("0000:99:00.0")));
        Assert.Equal("hostdev", minimal.Name);
        Assert.Null(minimal.Element("address"));
        Assert.Equal("0x99", (string?)minimal.Element("source")!.Element("address")!.Attribute("bus"));
    }

    [Fact]
    public void Malformed_xml_is_DomainXmlInvalid_and_dtds_are_refused()
    {
        Assert.Equal("DomainXmlInvalid", Assert.Throws<GalliumException>(() => DomainXml.ReadPciHostdevs("<domain><devices>")).ErrorId);
        const string entity = "<!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><domain><name>&x;</name></domain>";
        Assert.Equal("DomainXmlInvalid", Assert.Throws<GalliumException>(() => DomainXml.ReadPciHostdevs(entity)).ErrorId);
        Assert.Null(DomainXml.TryReadName(entity));
    }

    [Fact]
    public void Name_is_read_unescaped()
    {
        Assert.Equal("web<1>", DomainXml.TryReadName(Q35));
        Assert.Null(DomainXml.TryReadName("not xml"));
    }
}
