using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Tests.Libvirt;

public sealed class DomainFirmwareInfoTests
{
    [Fact]
    public void Reads_uefi_cpu_maxphysaddr_fw_cfg_globals_hole64_and_memory()
    {
        const string xml = """
            <domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
              <name>gpu</name>
              <memory unit='GiB'>16</memory>
              <maxMemory slots='16' unit='KiB'>67108864</maxMemory>
              <os>
                <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
                <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
                <nvram>/var/lib/libvirt/qemu/nvram/gpu_VARS.fd</nvram>
              </os>
              <cpu mode='custom' match='exact'>
                <model fallback='forbid'>Skylake-Server</model>
                <vendor>Intel</vendor>
                <maxphysaddr mode='emulate' bits='46'/>
              </cpu>
              <devices>
                <controller type='pci' index='0' model='pcie-root'><pcihole64 unit='GiB'>128</pcihole64></controller>
              </devices>
              <qemu:commandline>
                <qemu:arg value='-fw_cfg'/>
                <qemu:arg value='name=opt/ovmf/X-PciMmio64Mb,string=262144'/>
                <qemu:arg value='-global'/>
                <qemu:arg value='host-x86_64-cpu.host-phys-bits-limit=39'/>
                <qemu:arg value='-fw_cfg'/>
                <qemu:arg value='name=opt/com.example/blob,file=/tmp/a,,b'/>
              </qemu:commandline>
            </domain>
            """;
        var f = DomainFirmwareInfo.Read(xml);
        Assert.Equal(GuestFirmware.Uefi, f.Firmware);
        Assert.Equal("/usr/share/OVMF/OVMF_CODE_4M.fd", f.LoaderPath);
        Assert.Equal("pc-q35-7.2", f.MachineType);
        Assert.True(f.IsQ35);
        Assert.Equal(("custom", "Intel", "Skylake-Server"), (f.CpuMode, f.CpuVendor, f.CpuModel));
        Assert.Equal(("emulate", 46, (int?)null), (f.MaxPhysAddrMode, f.MaxPhysAddrBits, f.MaxPhysAddrLimit));
        Assert.Equal(2, f.FwCfg.Count);
        Assert.Equal(new FwCfgArgument("opt/ovmf/X-PciMmio64Mb", "262144", null, "name=opt/ovmf/X-PciMmio64Mb,string=262144"), f.FwCfg[0]);
        Assert.Equal(("opt/com.example/blob", "/tmp/a,b"), (f.FwCfg[1].Name, f.FwCfg[1].File));
        Assert.Equal(262144UL, f.PciMmio64Mb);
        Assert.Equal(["host-x86_64-cpu.host-phys-bits-limit=39"], f.QemuGlobals);
        Assert.Equal(128UL << 30, f.PciHole64Bytes);
        Assert.Equal(16UL << 30, f.MemoryBytes);
        Assert.Equal(64UL << 30, f.MaxMemoryBytes);
    }

    [Fact]
    public void Firmware_efi_attribute_is_uefi_and_defaults_are_bios()
    {
        var efi = DomainFirmwareInfo.Read("<domain><os firmware='efi'><type machine='q35'>hvm</type></os><cpu mode='host-passthrough'><maxphysaddr mode='passthrough'/></cpu></domain>");
        Assert.Equal(GuestFirmware.Uefi, efi.Firmware);
        Assert.Equal(("host-passthrough", "passthrough", (int?)null), (efi.CpuMode, efi.MaxPhysAddrMode, efi.MaxPhysAddrBits));
        Assert.Null(efi.CpuVendor);

        var bios = DomainFirmwareInfo.Read("<domain><os><type machine='pc-i440fx-7.2'>hvm</type></os><memory>65536</memory></domain>");
        Assert.Equal(GuestFirmware.Bios, bios.Firmware);
        Assert.False(bios.IsQ35);
        Assert.Null(bios.CpuMode);
        Assert.Null(bios.PciMmio64Mb);
        Assert.Empty(bios.FwCfg);
        Assert.Equal(65536UL * 1024, bios.MemoryBytes);   // libvirt's default unit is KiB

        var seabiosLoader = DomainFirmwareInfo.Read("<domain><os><loader>/usr/share/seabios/bios-256k.bin</loader></os></domain>");
        Assert.Equal(GuestFirmware.Bios, seabiosLoader.Firmware);
        var edk2 = DomainFirmwareInfo.Read("<domain><os><loader type='pflash'>/usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd</loader></os></domain>");
        Assert.Equal(GuestFirmware.Uefi, edk2.Firmware);
    }

    [Theory]
    [InlineData("KB", 1000UL)]
    [InlineData("kb", 1000UL)]
    [InlineData("k", 1024UL)]
    [InlineData("MiB", 1UL << 20)]
    [InlineData("M", 1UL << 20)]
    [InlineData("GB", 1000_000_000UL)]
    [InlineData("bytes", 1UL)]
    public void Memory_units_scale_like_libvirt(string unit, ulong scale) =>
        Assert.Equal(3 * scale, DomainFirmwareInfo.Read($"<domain><memory unit='{unit}'>3</memory></domain>").MemoryBytes);

    [Fact]
    public void Real_libvirt_default_domain_reads_as_bios_custom_qemu64()
    {
        // libvirt 9.0's inactive XML for LibvirtdFixture.DomainXmlFor (seen with virsh dumpxml --inactive).
        const string xml = """
            <domain type='qemu'><name>x</name><memory unit='KiB'>65536</memory>
              <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
              <cpu mode='custom' match='exact' check='none'><model fallback='forbid'>qemu64</model></cpu>
            </domain>
            """;
        var f = DomainFirmwareInfo.Read(xml);
        Assert.Equal((GuestFirmware.Bios, "custom", "qemu64", (string?)null), (f.Firmware, f.CpuMode, f.CpuModel, f.MaxPhysAddrMode));
    }
}
