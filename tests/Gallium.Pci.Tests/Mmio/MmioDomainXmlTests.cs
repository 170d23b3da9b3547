using System.Xml.Linq;
using Gallium.Pci.Mmio;
using static Gallium.Pci.Tests.Mmio.GpuBars;

namespace Gallium.Pci.Tests.Mmio;

public sealed class MmioDomainXmlTests
{
    /// <summary>A virt-install q35 UEFI guest as libvirt 9.0 dumps it (host-model CPU, two spare root ports, one off).</summary>
    const string HostModelDomain = """
        <domain type='kvm'>
          <name>gpu1</name>
          <uuid>2d3a7c8e-7f4e-4d9c-9d0c-2b1f0f6f7a11</uuid>
          <memory unit='KiB'>16777216</memory>
          <currentMemory unit='KiB'>16777216</currentMemory>
          <vcpu placement='static'>8</vcpu>
          <os firmware='efi'>
            <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
            <boot dev='hd'/>
          </os>
          <features>
            <acpi/>
            <apic/>
          </features>
          <cpu mode='host-model' check='partial'/>
          <devices>
            <emulator>/usr/bin/qemu-system-x86_64</emulator>
            <controller type='pci' index='0' model='pcie-root'/>
            <controller type='pci' index='1' model='pcie-root-port'>
              <model name='pcie-root-port'/>
              <target chassis='1' port='0x10'/>
              <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0' multifunction='on'/>
            </controller>
            <controller type='pci' index='2' model='pcie-root-port'>
              <model name='pcie-root-port'/>
              <target chassis='2' port='0x11'/>
              <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x1'/>
            </controller>
            <controller type='pci' index='3' model='pcie-root-port'>
              <model name='pcie-root-port'/>
              <target chassis='3' port='0x12' hotplug='off'/>
              <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x2'/>
            </controller>
          </devices>
        </domain>
        """;

    /// <summary>A custom-model guest that already uses qemu:commandline for its own purposes, with an X-PciMmio64Mb of 64 GiB.</summary>
    const string CustomDomainWithUserArgs = """
        <domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
          <name>render</name>
          <memory unit='GiB'>64</memory>
          <maxMemory slots='4' unit='GiB'>128</maxMemory>
          <os>
            <type arch='x86_64' machine='q35'>hvm</type>
            <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
            <nvram>/var/lib/libvirt/qemu/nvram/render_VARS.fd</nvram>
          </os>
          <cpu mode='custom' match='exact'>
            <model fallback='forbid' vendor_id='GenuineIntel'>Haswell-noTSX</model>
            <feature policy='require' name='pdpe1gb'/>
            <maxphysaddr mode='emulate' bits='40'/>
          </cpu>
          <devices/>
          <qemu:commandline>
            <qemu:arg value='-smbios'/>
            <qemu:arg value='type=1,serial=ABC'/>
            <qemu:arg value='-fw_cfg'/>
            <qemu:arg value='name=opt/ovmf/X-PciMmio64Mb,string=65536'/>
            <qemu:env name='MESA_DEBUG' value='1'/>
          </qemu:commandline>
        </domain>
        """;

    const string SeaBiosNoCpu = """
        <domain type='qemu'>
          <name>old</name>
          <memory>524288</memory>
          <os><type arch='x86_64' machine='q35'>hvm</type></os>
        </domain>
        """;

    static string Canon(string xml) => XDocument.Parse(xml).ToString();

    static MmioPlan FixPlan(string vm, params MmioChange[] changes) =>
        new() { VmName = vm, Outcome = MmioPlanOutcome.FixNeeded, Changes = changes, Reason = "test" };

    static MmioChange Emulate(int bits) => new(MmioChangeKind.MaxPhysAddr, $"emulate {bits}") { MaxPhysAddr = new(MaxPhysAddrMode.Emulate, bits) };
    static MmioChange Passthrough() => new(MmioChangeKind.MaxPhysAddr, "passthrough") { MaxPhysAddr = new(MaxPhysAddrMode.Passthrough) };
    static MmioChange Aperture(ulong mib) => new(MmioChangeKind.OvmfAperture, $"aperture {mib}") { ApertureMiB = mib };

    static int Count(string text, string what) => (text.Length - text.Replace(what, "").Length) / what.Length;

    /// <summary>The qemu:arg elements that set the OVMF aperture.</summary>
    static int ApertureArgs(string xml) => XDocument.Parse(xml).Descendants(XName.Get("arg", MmioDomainXml.QemuNamespace))
        .Count(a => ((string?)a.Attribute("value"))?.Contains("X-PciMmio64Mb") == true);

    // ---- reading --------------------------------------------------------------------------------------------------

    [Fact]
    public void ReadSettings_HostModelDomain()
    {
        var s = MmioDomainXml.ReadSettings(HostModelDomain);
        Assert.Equal("gpu1", s.Name);
        Assert.Equal(VmFirmware.Ovmf, s.Firmware);
        Assert.Equal(VmAccelerator.Kvm, s.Accelerator);
        Assert.Equal(VmCpuMode.HostModel, s.CpuMode);
        Assert.Null(s.CpuModel);
        Assert.Null(s.MaxPhysAddr);
        Assert.Null(s.OvmfApertureMiB);
        Assert.Equal(16 * GiB, s.MemoryBytes);
        Assert.Equal(0UL, s.MaxMemoryBytes);
        Assert.Equal(2, s.HotplugRootPorts);   // the hotplug='off' port gets no OVMF padding
    }

    [Fact]
    public void ReadSettings_CustomDomainWithUserArgs()
    {
        var s = MmioDomainXml.ReadSettings(CustomDomainWithUserArgs);
        Assert.Equal(VmFirmware.Ovmf, s.Firmware);   // pflash loader
        Assert.Equal(VmCpuMode.Custom, s.CpuMode);
        Assert.Equal("Haswell-noTSX", s.CpuModel);
        Assert.Equal("GenuineIntel", s.CpuVendorId);
        Assert.True(s.GigabytePagesFeature);
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Emulate, 40), s.MaxPhysAddr);
        Assert.Equal(65536UL, s.OvmfApertureMiB);
        Assert.Equal(64 * GiB, s.MemoryBytes);
        Assert.Equal(128 * GiB, s.MaxMemoryBytes);
        Assert.Equal(4, s.MemorySlots);
        Assert.Equal(0, s.HotplugRootPorts);
    }

    [Fact]
    public void ReadSettings_SeaBiosTcgNoCpu()
    {
        var s = MmioDomainXml.ReadSettings(SeaBiosNoCpu);
        Assert.Equal(VmFirmware.SeaBios, s.Firmware);
        Assert.Equal(VmAccelerator.Tcg, s.Accelerator);
        Assert.Equal(VmCpuMode.None, s.CpuMode);
        Assert.Equal(512 * MiB, s.MemoryBytes);   // default unit KiB
    }

    [Theory]
    [InlineData("<cpu mode='host-passthrough' migratable='on'/>", VmCpuMode.HostPassthrough)]
    [InlineData("<cpu mode='maximum'/>", VmCpuMode.Maximum)]
    [InlineData("<cpu><topology sockets='1' cores='2' threads='1'/></cpu>", VmCpuMode.Custom)]
    public void ReadSettings_CpuModes(string cpu, VmCpuMode expected)
    {
        string xml = SeaBiosNoCpu.Replace("</os>", "</os>" + cpu);
        Assert.Equal(expected, MmioDomainXml.ReadSettings(xml).CpuMode);
    }

    [Theory]
    [InlineData("<disk/>")]
    [InlineData("<domain><name>x</name>")]
    public void ReadSettings_NotADomain_Throws(string xml)
    {
        var e = Assert.Throws<GalliumException>(() => MmioDomainXml.ReadSettings(xml));
        Assert.Equal("DomainXmlInvalid", e.ErrorId);
    }

    // ---- maxphysaddr ----------------------------------------------------------------------------------------------

    [Fact]
    public void Passthrough_OnHostModel_AddsMaxPhysAddrAndMarker()
    {
        string fixedXml = MmioDomainXml.ApplyFix(HostModelDomain, FixPlan("gpu1", Passthrough()));
        var cpu = XDocument.Parse(fixedXml).Root!.Element("cpu")!;
        Assert.Equal("host-model", (string?)cpu.Attribute("mode"));
        Assert.Equal("passthrough", (string?)cpu.Element("maxphysaddr")!.Attribute("mode"));
        Assert.Null(cpu.Element("maxphysaddr")!.Attribute("bits"));
        var marker = XDocument.Parse(fixedXml).Root!.Element("metadata")!.Element(XName.Get("mmio", MmioDomainXml.GalliumNamespace))!;
        Assert.Equal("none", (string?)marker.Element(XName.Get("maxphysaddr", MmioDomainXml.GalliumNamespace))!.Attribute("prior"));
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Passthrough), MmioDomainXml.ReadSettings(fixedXml).MaxPhysAddr);
        Assert.DoesNotContain("xmlns:qemu", fixedXml);   // no aperture change, no qemu namespace
        // The pretty layout survives: the new element sits on its own indented line.
        Assert.Contains("\n    <maxphysaddr mode=\"passthrough\" />\n  </cpu>", fixedXml);
    }

    [Fact]
    public void ApplyTwice_EqualsApplyOnce_AndRemoveRestores()
    {
        var plan = FixPlan("gpu1", Passthrough(), Aperture(262144));
        string once = MmioDomainXml.ApplyFix(HostModelDomain, plan);
        string twice = MmioDomainXml.ApplyFix(once, plan);
        Assert.Equal(once, twice);
        Assert.Equal(1, Count(once, "xmlns:qemu="));
        Assert.Equal(1, ApertureArgs(once));
        Assert.Equal(1, Count(once, "<maxphysaddr"));
        Assert.Equal(Canon(HostModelDomain), Canon(MmioDomainXml.RemoveFix(once)));
        Assert.Equal(Canon(HostModelDomain), Canon(MmioDomainXml.RemoveFix(twice)));
    }

    [Fact]
    public void Emulate_ReplacesTheUsersWidth_AndRemoveRestoresIt()
    {
        string fixedXml = MmioDomainXml.ApplyFix(CustomDomainWithUserArgs, FixPlan("render", Emulate(41)));
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Emulate, 41), MmioDomainXml.ReadSettings(fixedXml).MaxPhysAddr);
        Assert.Equal(1, Count(fixedXml, "<maxphysaddr"));
        string restored = MmioDomainXml.RemoveFix(fixedXml);
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Emulate, 40), MmioDomainXml.ReadSettings(restored).MaxPhysAddr);
        Assert.Equal(Canon(CustomDomainWithUserArgs), Canon(restored));
    }

    [Fact]
    public void ApplyingALaterPlan_KeepsTheOriginalPriorValue()
    {
        // First 41 bits, later (a bigger GPU) 43 bits: removal still goes back to the user's 40.
        string first = MmioDomainXml.ApplyFix(CustomDomainWithUserArgs, FixPlan("render", Emulate(41)));
        string second = MmioDomainXml.ApplyFix(first, FixPlan("render", Emulate(43)));
        Assert.Equal(43, MmioDomainXml.ReadSettings(second).MaxPhysAddr!.Bits);
        Assert.Equal(Canon(CustomDomainWithUserArgs), Canon(MmioDomainXml.RemoveFix(second)));
    }

    [Fact]
    public void NoCpuElement_IsAddedAndRemoved_EvenAfterLibvirtFilledItIn()
    {
        string fixedXml = MmioDomainXml.ApplyFix(SeaBiosNoCpu, FixPlan("old", Emulate(42)));
        var s = MmioDomainXml.ReadSettings(fixedXml);
        Assert.Equal(VmCpuMode.Custom, s.CpuMode);    // libvirt: -cpu qemu64,phys-bits=42 [V]
        Assert.Null(s.CpuModel);
        Assert.Equal(Canon(SeaBiosNoCpu), Canon(MmioDomainXml.RemoveFix(fixedXml)));

        // After define, libvirt dumps <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model>… [V]
        var doc = XDocument.Parse(fixedXml);
        var cpu = doc.Root!.Element("cpu")!;
        cpu.SetAttributeValue("mode", "custom");
        cpu.SetAttributeValue("match", "exact");
        cpu.SetAttributeValue("check", "none");
        cpu.AddFirst(new XElement("model", new XAttribute("fallback", "forbid"), "qemu64"));
        Assert.Null(XDocument.Parse(MmioDomainXml.RemoveFix(doc.ToString())).Root!.Element("cpu"));
    }

    [Fact]
    public void ValueChangedByTheUserSinceTheFix_IsLeftAlone()
    {
        string fixedXml = MmioDomainXml.ApplyFix(HostModelDomain, FixPlan("gpu1", Emulate(44), Aperture(131072)));
        var doc = XDocument.Parse(fixedXml);
        doc.Root!.Element("cpu")!.Element("maxphysaddr")!.SetAttributeValue("bits", "45");
        doc.Root.Descendants(XName.Get("arg", MmioDomainXml.QemuNamespace)).Last().SetAttributeValue("value", "name=opt/ovmf/X-PciMmio64Mb,string=99999");
        string removed = MmioDomainXml.RemoveFix(doc.ToString());
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Emulate, 45), MmioDomainXml.ReadSettings(removed).MaxPhysAddr);
        Assert.Equal(99999UL, MmioDomainXml.ReadSettings(removed).OvmfApertureMiB);
        Assert.DoesNotContain(MmioDomainXml.GalliumNamespace, removed);   // the marker goes either way
    }

    // ---- OVMF aperture -------------------------------------------------------------------------------------------

    [Fact]
    public void Aperture_ExistingArgIsUpdatedInPlace_UserArgsUntouched()
    {
        string fixedXml = MmioDomainXml.ApplyFix(CustomDomainWithUserArgs, FixPlan("render", Aperture(262144)));
        Assert.Equal(1, Count(fixedXml, "xmlns:qemu="));
        Assert.Equal(1, ApertureArgs(fixedXml));
        Assert.Equal(262144UL, MmioDomainXml.ReadSettings(fixedXml).OvmfApertureMiB);
        var args = XDocument.Parse(fixedXml).Root!.Element(XName.Get("commandline", MmioDomainXml.QemuNamespace))!
            .Elements().Select(e => (string?)e.Attribute("value") ?? e.Name.LocalName).ToList();
        Assert.Equal(["-smbios", "type=1,serial=ABC", "-fw_cfg", "name=opt/ovmf/X-PciMmio64Mb,string=262144", "1"], args);
        string restored = MmioDomainXml.RemoveFix(fixedXml);
        Assert.Equal(65536UL, MmioDomainXml.ReadSettings(restored).OvmfApertureMiB);
        Assert.Equal(Canon(CustomDomainWithUserArgs), Canon(restored));
    }

    [Fact]
    public void Aperture_NewArgsGoAfterTheUsersOwn_AndRemoveTakesOnlyOurs()
    {
        string withoutX = CustomDomainWithUserArgs
            .Replace("    <qemu:arg value='-fw_cfg'/>\n", "")
            .Replace("    <qemu:arg value='name=opt/ovmf/X-PciMmio64Mb,string=65536'/>\n", "");
        Assert.DoesNotContain("X-PciMmio64Mb", withoutX);
        string fixedXml = MmioDomainXml.ApplyFix(withoutX, FixPlan("render", Aperture(524288)));
        var args = XDocument.Parse(fixedXml).Root!.Element(XName.Get("commandline", MmioDomainXml.QemuNamespace))!
            .Elements(XName.Get("arg", MmioDomainXml.QemuNamespace)).Select(e => (string?)e.Attribute("value")).ToList();
        Assert.Equal(["-smbios", "type=1,serial=ABC", "-fw_cfg", "name=opt/ovmf/X-PciMmio64Mb,string=524288"], args);
        Assert.Equal(Canon(withoutX), Canon(MmioDomainXml.RemoveFix(fixedXml)));
    }

    [Fact]
    public void Aperture_OnADomainWithoutQemuNamespace_DeclaresItOnceOnTheRoot()
    {
        string fixedXml = MmioDomainXml.ApplyFix(HostModelDomain, FixPlan("gpu1", Aperture(262144)));
        Assert.StartsWith("<domain type='kvm' xmlns:qemu=\"http://libvirt.org/schemas/domain/qemu/1.0\">".Replace('\'', '"'),
            fixedXml.Replace('\'', '"'));
        Assert.Equal(1, Count(fixedXml, "xmlns:qemu="));
        Assert.Contains("<qemu:arg value=\"-fw_cfg\" />", fixedXml);
        Assert.DoesNotContain("sysinfo", fixedXml);   // never <sysinfo type='fwcfg'>: libvirt rejects it (REFERENCE §6.3)
        string removed = MmioDomainXml.RemoveFix(fixedXml);
        Assert.DoesNotContain("xmlns:qemu", removed);
        Assert.DoesNotContain("qemu:", removed);
        Assert.Equal(Canon(HostModelDomain), Canon(removed));
    }

    // ---- no-ops and refusals ----------------------------------------------------------------------------------------

    [Fact]
    public void NotNeededPlan_ReturnsTheTextUnchanged()
    {
        var plan = MmioPlanner.PlanForDomain(HostModelDomain, IntelXeon46, [Rtx4090(resizableBar: false)]);
        Assert.Equal(MmioPlanOutcome.NotNeeded, plan.Outcome);
        Assert.Same(HostModelDomain, MmioDomainXml.ApplyFix(HostModelDomain, plan));
    }

    [Fact]
    public void RemoveFix_WithoutMarker_ReturnsTheTextUnchanged() =>
        Assert.Same(CustomDomainWithUserArgs, MmioDomainXml.RemoveFix(CustomDomainWithUserArgs));

    [Fact]
    public void RefusedPlan_ApplyThrowsTheRefusal()
    {
        var plan = MmioPlanner.PlanForDomain(SeaBiosNoCpu, IntelXeon46, [H100()]);
        var e = Assert.Throws<GalliumException>(() => MmioDomainXml.ApplyFix(SeaBiosNoCpu, plan));
        Assert.Equal("VmFirmwareNotUefi", e.ErrorId);
        Assert.Equal("old", e.Target);
    }

    // ---- end to end -------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData("intel46")]
    [InlineData("intel39")]
    [InlineData("amd48")]
    public void PlanApplyReplan_H100_NeedsNothingMore(string hostName)
    {
        var host = hostName switch { "intel46" => IntelXeon46, "intel39" => IntelDesktop39, _ => AmdEpyc48 };
        var plan = MmioPlanner.PlanForDomain(HostModelDomain, host, [H100()]);
        Assert.Equal(MmioPlanOutcome.FixNeeded, plan.Outcome);
        string fixedXml = MmioDomainXml.ApplyFix(HostModelDomain, plan);
        var again = MmioPlanner.PlanForDomain(fixedXml, host, [H100()]);
        Assert.Equal(MmioPlanOutcome.NotNeeded, again.Outcome);
        Assert.Equal(plan.FixedWindow, again.CurrentWindow);
        Assert.Equal(Canon(HostModelDomain), Canon(MmioDomainXml.RemoveFix(fixedXml)));
    }

    [Fact]
    public void LibvirtDumpOfAFixedDomain_RemoveFixStillWorks()
    {
        // `virsh dumpxml --inactive` of a domain defined from ApplyFix output on libvirt 9.0 [V]: the metadata element,
        // the qemu namespace and the args survive (attributes reformatted with single quotes, <cpu> filled in).
        const string dumped = """
            <domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
              <name>mmx-probe</name>
              <uuid>bb793d05-c5a3-4c56-bb8b-2b6e836a95e2</uuid>
              <metadata>
                <gallium:mmio xmlns:gallium="https://gallium.dev/pci/1" version="1" cpu-added="yes" ns-added="yes" commandline-added="yes" metadata-added="yes">
                  <gallium:maxphysaddr prior="none" mode="emulate" bits="41"/>
                  <gallium:aperture prior="none" mib="262144"/>
                </gallium:mmio>
              </metadata>
              <memory unit='KiB'>524288</memory>
              <os>
                <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
                <boot dev='hd'/>
              </os>
              <cpu mode='custom' match='exact' check='none'>
                <model fallback='forbid'>qemu64</model>
                <maxphysaddr mode='emulate' bits='41'/>
              </cpu>
              <devices>
                <emulator>/usr/bin/qemu-system-x86_64</emulator>
              </devices>
              <qemu:commandline>
                <qemu:arg value='-fw_cfg'/>
                <qemu:arg value='name=opt/ovmf/X-PciMmio64Mb,string=262144'/>
              </qemu:commandline>
            </domain>
            """;
        var root = XDocument.Parse(MmioDomainXml.RemoveFix(dumped)).Root!;
        Assert.Null(root.Element("cpu"));
        Assert.Null(root.Element("metadata"));
        Assert.Null(root.Element(XName.Get("commandline", MmioDomainXml.QemuNamespace)));
        Assert.DoesNotContain(root.Attributes(), a => a.IsNamespaceDeclaration);
        Assert.Equal("mmx-probe", root.Element("name")!.Value);
    }
}
