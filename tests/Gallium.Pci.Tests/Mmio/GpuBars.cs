using Gallium.Pci.Mmio;

namespace Gallium.Pci.Tests.Mmio;

/// <summary>Real BAR layouts (as <c>lspci -vv</c> shows them on the hosts) and host CPUs, for the MMIO tests.</summary>
internal static class GpuBars
{
    public const ulong MiB = 1UL << 20;
    public const ulong GiB = 1UL << 30;
    public const ulong TiB = 1UL << 40;

    public static PciBar Bar64(int index, ulong size) => new(index, 0, size, Is64Bit: true, IsPrefetchable: true, IsIo: false, IsAssigned: false);
    public static PciBar Bar32(int index, ulong size) => new(index, 0xf000_0000, size, Is64Bit: false, IsPrefetchable: false, IsIo: false, IsAssigned: true);
    public static PciBar Bar64NonPrefetchable(int index, ulong size) => new(index, 0x4000_0000_00, size, true, false, false, true);
    public static PciBar Io(int index, ulong size) => new(index, 0x3000, size, false, false, true, true);

    static PciDevice Nvidia(string address, ushort deviceId, params PciBar[] bars) => new()
    {
        Address = PciAddress.Parse(address), VendorId = 0x10de, DeviceId = deviceId, ClassCode = 0x030200, Bars = bars,
    };

    /// <summary>H100 80 GB (SXM/PCIe): BAR0 16 MiB 32-bit, BAR1 128 GiB 64-bit pref, BAR3 32 MiB 64-bit pref.</summary>
    public static PciDevice H100(string address = "0000:65:00.0") => Nvidia(address, 0x2330, Bar32(0, 16 * MiB), Bar64(1, 128 * GiB), Bar64(3, 32 * MiB));
    /// <summary>A100 80 GB: the same shape as H100.</summary>
    public static PciDevice A100_80(string address = "0000:17:00.0") => Nvidia(address, 0x20b2, Bar32(0, 16 * MiB), Bar64(1, 128 * GiB), Bar64(3, 32 * MiB));
    /// <summary>A100 40 GB: 64 GiB BAR1.</summary>
    public static PciDevice A100_40(string address = "0000:17:00.0") => Nvidia(address, 0x20b0, Bar32(0, 16 * MiB), Bar64(1, 64 * GiB), Bar64(3, 32 * MiB));
    /// <summary>H200 141 GB: 256 GiB BAR1.</summary>
    public static PciDevice H200(string address = "0000:9a:00.0") => Nvidia(address, 0x2335, Bar32(0, 16 * MiB), Bar64(1, 256 * GiB), Bar64(3, 32 * MiB));
    /// <summary>B300 288 GB: 512 GiB BAR1.</summary>
    public static PciDevice B300(string address = "0000:1b:00.0") => Nvidia(address, 0x3182, Bar32(0, 64 * MiB), Bar64(1, 512 * GiB), Bar64(3, 32 * MiB));
    /// <summary>RTX 4090 with Resizable BAR on (32 GiB BAR1) or off (256 MiB BAR1).</summary>
    public static PciDevice Rtx4090(bool resizableBar, string address = "0000:01:00.0") =>
        Nvidia(address, 0x2684, Bar32(0, 16 * MiB), Bar64(1, resizableBar ? 32 * GiB : 256 * MiB), Bar64(3, 32 * MiB), Io(5, 128));
    /// <summary>The 4090's HDMI audio function: one 16 KiB 32-bit BAR.</summary>
    public static PciDevice Rtx4090Audio(string address = "0000:01:00.1") => Nvidia(address, 0x22ba, Bar32(0, 16 * 1024));
    /// <summary>An Intel X710 NIC: 32-bit and 64-bit non-prefetchable BARs only... plus a 64-bit pref BAR3 of 32 KiB.</summary>
    public static PciDevice NicWith32BitBars(string address = "0000:3b:00.0") => new()
    {
        Address = PciAddress.Parse(address), VendorId = 0x8086, DeviceId = 0x1572, ClassCode = 0x020000,
        Bars = [Bar32(0, 8 * MiB), Bar32(3, 32 * 1024), Bar64NonPrefetchable(2, 16 * MiB)],
    };
    /// <summary>The stand-in the boot proof uses: <c>pci-testdev,membar=N</c> gives BAR2 64-bit pref of N (REFERENCE §3.4).</summary>
    public static PciDevice TestDev(ulong membar, string address = "0000:01:00.0") => new()
    {
        Address = PciAddress.Parse(address), VendorId = 0x1b36, DeviceId = 0x0005, Bars = [Bar32(0, 4096), Io(1, 256), Bar64(2, membar)],
    };

    public static readonly HostCpu IntelXeon46 = new(46, CpuVendor.Intel, HasGigabytePages: true);
    public static readonly HostCpu IntelDesktop39 = new(39, CpuVendor.Intel, HasGigabytePages: true);
    public static readonly HostCpu AmdEpyc48 = new(48, CpuVendor.Amd, HasGigabytePages: true);
    public static readonly HostCpu AmdEpyc52 = new(52, CpuVendor.Amd, HasGigabytePages: true);

    /// <summary>A q35 OVMF KVM guest with 16 GiB RAM and a host-model CPU, the virt-install default.</summary>
    public static VmMmioSettings Vm(VmCpuMode mode = VmCpuMode.HostModel, string? model = null) => new()
    {
        Name = "gpu1", Firmware = VmFirmware.Ovmf, Accelerator = VmAccelerator.Kvm, CpuMode = mode, CpuModel = model,
        MemoryBytes = 16 * GiB,
    };
}
