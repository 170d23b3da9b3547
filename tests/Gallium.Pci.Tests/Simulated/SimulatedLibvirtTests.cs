using System.Xml.Linq;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Simulated;

/// <summary>A simulated host's libvirt: libvirt's real test driver behind one held connection, with the qemu driver's
/// attach/detach and its domain type and &lt;qemu:commandline&gt; kept (issue 15).</summary>
public sealed class SimulatedLibvirtTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("gallium-simlibvirt-").FullName;
    private readonly SimulatedLibvirt _libvirt;

    public SimulatedLibvirtTests() => _libvirt = SimulatedLibvirt.Open(Path.Combine(_dir, "node.xml"));

    public void Dispose()
    {
        _libvirt.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private const string UefiKvmWithFix = """
        <domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
          <name>fixed</name>
          <memory unit='GiB'>16</memory>
          <os><type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader></os>
          <devices/>
          <qemu:commandline><qemu:arg value='-fw_cfg'/><qemu:arg value='name=opt/ovmf/X-PciMmio64Mb,string=262144'/></qemu:commandline>
        </domain>
        """;

    private static string Hostdev(string bus) =>
        $"<hostdev mode='subsystem' type='pci' managed='no'><source><address domain='0x0000' bus='0x{bus}' slot='0x00' function='0x0'/></source></hostdev>";

    private static IReadOnlyList<string> HostdevBuses(LibvirtDomain d) =>
        DomainXml.ReadPciHostdevs(d.Xml).Select(h => h.Address.Bus.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)).ToArray();

    [Fact]
    public void A_definition_keeps_its_own_domain_type_and_qemu_commandline_though_the_test_driver_takes_neither()
    {
        using var view = _libvirt.Open(null);
        view.DefineDomain(UefiKvmWithFix);

        var back = view.GetDomain("fixed");
        var root = XDocument.Parse(back.Xml).Root!;
        Assert.Equal("kvm", (string?)root.Attribute("type"));
        Assert.Equal(262144UL, MmioDomainXml.ReadSettings(back.Xml).OvmfApertureMiB);
        Assert.Equal(VmFirmware.Ovmf, MmioDomainXml.ReadSettings(back.Xml).Firmware);
        // Nothing of the keeping shows: no metadata element was in the definition, none comes back.
        Assert.Null(root.Element("metadata"));
        Assert.Equal(back.Xml, Assert.Single(view.ListDomains()).Xml);
    }

    [Fact]
    public void The_users_own_metadata_survives_and_only_the_kept_element_is_taken_out()
    {
        string xml = UefiKvmWithFix.Replace("<memory", "<metadata><app:owner xmlns:app='https://example.org/app'>team-a</app:owner></metadata><memory",
            StringComparison.Ordinal);
        using var view = _libvirt.Open(null);
        var back = XDocument.Parse(view.DefineDomain(xml).Xml).Root!;
        var metadata = Assert.Single(back.Elements("metadata"));
        var owner = Assert.Single(metadata.Elements());
        Assert.Equal("team-a", owner.Value);
        Assert.Equal("https://example.org/app", owner.Name.NamespaceName);
    }

    [Fact]
    public void Attach_adds_to_the_definition_again_fails_with_code_55_and_detach_of_what_is_not_there_with_code_99()
    {
        using var view = _libvirt.Open(null);
        view.DefineDomain(UefiKvmWithFix);

        view.AttachDeviceToConfig("fixed", Hostdev("01"));
        view.AttachDeviceToConfig("fixed", Hostdev("02"));
        Assert.Equal(["01", "02"], HostdevBuses(view.GetDomain("fixed")));
        // The edit is a define of the whole definition: the fix and the type are still there.
        Assert.Equal(262144UL, MmioDomainXml.ReadSettings(view.GetDomain("fixed").Xml).OvmfApertureMiB);

        var again = Assert.ThrowsAny<LibvirtException>(() => view.AttachDeviceToConfig("fixed", Hostdev("01")));
        Assert.Equal(LibvirtErrorCode.OperationInvalid, again.Code);

        view.DetachDeviceFromConfig("fixed", Hostdev("01"));
        Assert.Equal(["02"], HostdevBuses(view.GetDomain("fixed")));
        var missing = Assert.ThrowsAny<LibvirtException>(() => view.DetachDeviceFromConfig("fixed", Hostdev("01")));
        Assert.Equal(LibvirtErrorCode.DeviceMissing, missing.Code);
        Assert.Equal(["02"], HostdevBuses(view.GetDomain("fixed")));
    }

    [Fact]
    public void A_transient_domain_has_no_definition_to_edit_code_55()
    {
        using var view = _libvirt.Open(null);
        view.CreateTransientDomain(UefiKvmWithFix.Replace("<name>fixed</name>", "<name>passing</name>", StringComparison.Ordinal), paused: false);   // the test driver cannot start one paused
        var e = Assert.ThrowsAny<LibvirtException>(() => view.AttachDeviceToConfig("passing", Hostdev("01")));
        Assert.Equal(LibvirtErrorCode.OperationInvalid, e.Code);
        Assert.False(view.GetDomain("passing").IsPersistent);
    }

    [Fact]
    public void What_one_view_changes_the_next_view_sees_and_disposing_a_view_leaves_the_connection_open()
    {
        using (var first = _libvirt.Open(null)) first.DefineDomain(UefiKvmWithFix);
        using (var second = _libvirt.Open(_libvirt.DefaultUri, readOnly: true))
            Assert.Equal("fixed", Assert.Single(second.ListDomains()).Name);
    }

    [Fact]
    public void A_second_test_driver_connection_to_the_same_file_has_state_of_its_own()
    {
        using (var view = _libvirt.Open(null)) view.DefineDomain(UefiKvmWithFix);
        // Why the host holds one connection: libvirt's test driver keeps what a connection did to that connection.
        using var other = LibvirtConnection.Open(_libvirt.DefaultUri);
        Assert.Empty(other.ListDomains());
    }

    [Fact]
    public void A_read_only_view_refuses_every_change_as_libvirt_does_code_29_and_changes_nothing()
    {
        using (var view = _libvirt.Open(null)) view.DefineDomain(UefiKvmWithFix);
        using var ro = _libvirt.Open(null, readOnly: true);
        Action[] changes =
        [
            () => ro.AttachDeviceToConfig("fixed", Hostdev("01")),
            () => ro.DetachDeviceFromConfig("fixed", Hostdev("01")),
            () => ro.DefineDomain(UefiKvmWithFix),
            () => ro.StartDomain("fixed", paused: true),
            () => ro.UndefineDomain("fixed"),
        ];
        foreach (var change in changes)
            Assert.Equal(LibvirtErrorCode.OperationDenied, Assert.ThrowsAny<LibvirtException>(change).Code);
        var d = ro.GetDomain("fixed");
        Assert.Empty(HostdevBuses(d));
        Assert.Equal(VmState.ShutOff, d.State);
    }

    [Fact]
    public void Another_uri_is_opened_for_real_and_a_closed_host_libvirt_opens_no_more_views()
    {
        var e = Assert.Throws<LibvirtConnectionFailedException>(() => _libvirt.Open("test:///nonexistent-dir/none.xml"));
        Assert.Equal("test:///nonexistent-dir/none.xml", e.Uri);
        _libvirt.Dispose();
        Assert.Throws<ObjectDisposedException>(() => _libvirt.Open(null));
    }

    [Fact]
    public void The_uri_of_a_path_with_spaces_is_percent_encoded_and_libvirt_opens_it()
    {
        string node = Path.Combine(_dir, "a b", "node.xml");
        using var spaced = SimulatedLibvirt.Open(node);
        Assert.Contains("a%20b", spaced.DefaultUri, StringComparison.Ordinal);
        using var view = spaced.Open(null);
        Assert.Empty(view.ListDomains());
        Assert.True(File.Exists(node));
    }

    [Fact]
    public void Defined_preset_vms_are_stopped_persistent_q35_with_free_root_ports()
    {
        _libvirt.DefineVm("uefi-vm");
        _libvirt.DefineVm("bios-vm", uefi: false);
        using var view = _libvirt.Open(null);
        var uefi = view.GetDomain("uefi-vm");
        Assert.Equal(VmState.ShutOff, uefi.State);
        Assert.True(uefi.IsPersistent);
        var settings = MmioDomainXml.ReadSettings(uefi.Xml);
        Assert.Equal(VmFirmware.Ovmf, settings.Firmware);
        Assert.Equal(VmAccelerator.Kvm, settings.Accelerator);
        Assert.Equal(4, settings.HotplugRootPorts);
        Assert.Equal(VmFirmware.SeaBios, MmioDomainXml.ReadSettings(view.GetDomain("bios-vm").Xml).Firmware);
    }
}
