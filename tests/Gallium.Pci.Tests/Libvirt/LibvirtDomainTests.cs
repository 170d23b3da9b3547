using System.Xml.Linq;
using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Tests.Libvirt;

[Collection(LibvirtdCollection.Name)]
public sealed class LibvirtDomainTests(LibvirtdFixture fixture)
{
    [Fact]
    public void Listing_returns_persistent_and_transient_domains_with_uuid_state_and_xml()
    {
        using var stopped = TestVm.Define(fixture, "list-persistent");
        using var transient = TestVm.CreateTransient(fixture, "list-transient");

        var all = fixture.Libvirt.ListDomains();

        var p = Assert.Single(all, d => d.Name == stopped.Name);
        Assert.True(p.IsPersistent);
        Assert.Equal(VmState.ShutOff, p.State);
        Assert.Equal(stopped.Domain.Uuid, p.Uuid);
        Assert.NotEqual(Guid.Empty, p.Uuid);
        var pXml = XDocument.Parse(p.Xml).Root!;
        Assert.Equal(stopped.Name, pXml.Element("name")!.Value);
        Assert.Equal(p.Uuid, Guid.Parse(pXml.Element("uuid")!.Value));

        var t = Assert.Single(all, d => d.Name == transient.Name);
        Assert.False(t.IsPersistent);
        Assert.Equal(VmState.Paused, t.State);
        // A transient domain has only live XML: it carries the runtime id attribute an inactive XML never has.
        Assert.NotNull(XDocument.Parse(t.Xml).Root!.Attribute("id"));
        Assert.Null(XDocument.Parse(p.Xml).Root!.Attribute("id"));
    }

    [Fact]
    public void Persistent_domain_listing_uses_the_inactive_definition_even_while_running()
    {
        using var vm = TestVm.Define(fixture, "inactive-xml");
        fixture.Libvirt.StartDomain(vm.Name, paused: true);
        var d = Assert.Single(fixture.Libvirt.ListDomains(), x => x.Name == vm.Name);
        Assert.Equal(VmState.Paused, d.State);
        Assert.True(d.IsPersistent);
        Assert.Null(XDocument.Parse(d.Xml).Root!.Attribute("id"));
    }

    [Fact]
    public void Never_started_domain_is_shut_off_with_reason_0_and_start_paused_is_paused()
    {
        using var vm = TestVm.Define(fixture, "states");
        var before = fixture.Libvirt.GetDomain(vm.Name);
        Assert.Equal(VmState.ShutOff, before.State);
        Assert.Equal(0, before.StateReason);   // REFERENCE §5.4 [V]

        fixture.Libvirt.StartDomain(vm.Name, paused: true);
        Assert.Equal(VmState.Paused, fixture.Libvirt.GetDomain(vm.Name).State);

        fixture.Libvirt.DestroyDomain(vm.Name);
        var after = fixture.Libvirt.GetDomain(vm.Name);
        Assert.Equal(VmState.ShutOff, after.State);
        Assert.Equal(2, after.StateReason);    // VIR_DOMAIN_SHUTOFF_DESTROYED
    }

    [Fact]
    public void Unknown_vm_is_VmNotFound_with_code_42()
    {
        string name = fixture.NewName("absent");
        var e = Assert.Throws<VmNotFoundException>(() => fixture.Libvirt.GetDomain(name));
        Assert.Equal("VmNotFound", e.ErrorId);
        Assert.Equal(ErrorKind.ObjectNotFound, e.Kind);
        Assert.Equal(LibvirtErrorCode.NoDomain, e.Code);
        Assert.Equal(name, e.Target);
        Assert.Contains(name, e.Message, StringComparison.Ordinal);
        Assert.Throws<VmNotFoundException>(() => fixture.Libvirt.AttachDeviceToConfig(name, DomainXml.BuildHostdev(PciAddress.Parse("0000:ee:00.0"))));
        Assert.Throws<VmNotFoundException>(() => fixture.Libvirt.StartDomain(name, paused: true));
    }

    [Fact]
    public void Destroying_a_shut_off_domain_is_InvalidOperation()
    {
        using var vm = TestVm.Define(fixture, "destroy-off");
        var e = Assert.Throws<LibvirtOperationFailedException>(() => fixture.Libvirt.DestroyDomain(vm.Name));
        Assert.Equal(LibvirtErrorCode.OperationInvalid, e.Code);
        Assert.Equal(ErrorKind.InvalidOperation, e.Kind);
        Assert.Equal(vm.Name, e.Target);
    }

    [Fact]
    public void Invalid_domain_xml_is_LibvirtOperationFailed_InvalidArgument()
    {
        var e = Assert.Throws<LibvirtOperationFailedException>(() => fixture.Libvirt.DefineDomain("<domain type='qemu'><name>x</name></domain"));
        Assert.Equal(LibvirtErrorCode.XmlDetail, e.Code);   // VIR_ERR_XML_DETAIL, observed on 9.0
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
    }

    [Theory]
    [InlineData("meta<>&'\"")]
    [InlineData("ünïcödé-日本-Ω")]
    [InlineData("sp ace")]
    public void Names_with_xml_metacharacters_quotes_and_unicode_round_trip(string what)
    {
        using var vm = TestVm.Define(fixture, what);
        Assert.Contains(what, vm.Name, StringComparison.Ordinal);
        Assert.Equal(vm.Name, fixture.Libvirt.GetDomain(vm.Name).Name);
        Assert.Single(fixture.Libvirt.ListDomains(), d => d.Name == vm.Name);

        var source = PciAddress.Parse("0000:ee:01.0");
        fixture.Libvirt.AttachDeviceToConfig(vm.Name, DomainXml.BuildHostdev(source));
        var assignment = Assert.Single(AssignmentIndex.FromDomains(fixture.Libvirt.ListDomains()).ForAddress(source),
            a => a.VmName == vm.Name);
        Assert.Equal(vm.Domain.Uuid, assignment.VmUuid);
        var e = Assert.Throws<LibvirtOperationFailedException>(() => fixture.Libvirt.AttachDeviceToConfig(vm.Name, DomainXml.BuildHostdev(source)));
        Assert.Contains(vm.Name, e.Message, StringComparison.Ordinal);
        Assert.Equal(vm.Name, e.Target);
    }

    [Theory]
    [InlineData("\0")]
    [InlineData("\t")]
    [InlineData("\u001b[2J")]
    [InlineData("\n")]
    public void A_name_with_a_control_character_never_reaches_libvirt_VmNameInvalid(string control)
    {
        // A NUL would end the C string: "<name>\0x" would look up, and edit, the VM named by the prefix.
        using var vm = TestVm.Define(fixture, "prefix");
        string name = vm.Name + control + "x";
        var e = Assert.Throws<VmNameInvalidException>(() => fixture.Libvirt.GetDomain(name));
        Assert.Equal(("VmNameInvalid", ErrorKind.InvalidArgument), (e.ErrorId, e.Kind));
        Assert.DoesNotContain(control, e.Message, StringComparison.Ordinal);
        Assert.Throws<VmNameInvalidException>(() => fixture.Libvirt.GetDefinition(name));
        Assert.Throws<VmNameInvalidException>(() => fixture.Libvirt.AttachDeviceToConfig(name, DomainXml.BuildHostdev(PciAddress.Parse("0000:ee:01.0"))));
        Assert.Empty(DomainXml.ReadPciHostdevs(fixture.Libvirt.GetDefinition(vm.Name)));
    }

    [Fact]
    public void The_definition_is_read_with_its_secrets_for_a_define_and_without_them_in_a_listing()
    {
        string name = fixture.NewName("secure");
        var xml = XElement.Parse(LibvirtdFixture.DomainXmlFor(name));
        xml.Element("devices")!.Add(XElement.Parse("<graphics type='vnc' port='-1' autoport='yes' passwd='s3cr&amp;t'/>"));
        try
        {
            fixture.Libvirt.DefineDomain(xml.ToString());
            Assert.Contains("passwd='s3cr&amp;t'", fixture.Libvirt.GetDefinition(name), StringComparison.Ordinal);
            Assert.DoesNotContain("passwd", fixture.Libvirt.GetDomain(name).Xml, StringComparison.Ordinal);
        }
        finally { fixture.Remove(name); }
    }
}
