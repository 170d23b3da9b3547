using Gallium.Pci.Mmio;
using static Gallium.Pci.Tests.Mmio.GpuBars;

namespace Gallium.Pci.Tests.Mmio;

/// <summary>OVMF 2022.11's window choice. Cases marked [V] were observed in a TCG guest on this machine (tests/mmio).</summary>
public sealed class OvmfFirmwareTests
{
    static MmioWindow Window(int bits, CpuVendor vendor, bool gigabytePages = true, ulong? apertureMiB = null,
        VmAccelerator accel = VmAccelerator.Tcg, ulong memory = 512 * MiB, HostCpu? host = null)
    {
        var vm = new VmMmioSettings { Name = "t", Accelerator = accel, MemoryBytes = memory };
        return OvmfFirmware.Window(vm, new GuestCpu(bits, vendor, gigabytePages, "test"), host ?? AmdEpyc48, apertureMiB);
    }

    [Theory]
    [InlineData(40, CpuVendor.Intel, false)]
    [InlineData(39, CpuVendor.Intel, true)]
    [InlineData(36, CpuVendor.Intel, true)]
    [InlineData(40, CpuVendor.Amd, true)]
    [InlineData(39, CpuVendor.Amd, false)]
    [InlineData(41, CpuVendor.Intel, true)]
    [InlineData(41, CpuVendor.Other, true)]
    [InlineData(40, CpuVendor.Other, false)]
    public void TrustsAddressWidth(int bits, CpuVendor vendor, bool trusted) =>
        Assert.Equal(trusted, OvmfFirmware.TrustsAddressWidth(bits, vendor));

    [Fact]
    public void Intel40_Untrusted_Classic32GiB()
    {
        // [V] qemu64,vendor=GenuineIntel: a 64 GiB BAR is left unassigned.
        var w = Window(40, CpuVendor.Intel);
        Assert.Equal(MmioWindowKind.Classic, w.Kind);
        Assert.False(w.AddressWidthTrusted);
        Assert.Equal(32 * GiB, w.Size);
        Assert.Equal(32 * GiB, w.Base);   // above 4 GiB of RAM end, aligned to its own size
    }

    [Fact]
    public void Amd40_Dynamic128GiB_CutByTheHyperTransportHole()
    {
        // [V] -cpu max (TCG, AuthenticAMD, 40 bits): window at 0xe000000000; the HT hole cuts 12 GiB off its top.
        var w = Window(40, CpuVendor.Amd);
        Assert.Equal(MmioWindowKind.Dynamic, w.Kind);
        Assert.Equal(0xE0_0000_0000UL, w.Base);
        Assert.Equal(128 * GiB, w.Size);
        Assert.Equal(116 * GiB, w.UsableBytes);
        Assert.Contains("HyperTransport", w.Limit);
    }

    [Fact]
    public void Intel41WithoutGigabytePages_CappedTo40Bits()
    {
        // [V] qemu64,vendor=GenuineIntel,phys-bits=41: window at 0xe000000000, not 0x1c000000000.
        var w = Window(41, CpuVendor.Intel, gigabytePages: false);
        Assert.Equal(0xE0_0000_0000UL, w.Base);
        Assert.Equal(128 * GiB, w.Size);
        Assert.Equal(128 * GiB, w.UsableBytes);   // no HT hole for an Intel vCPU
    }

    [Fact]
    public void Intel41WithGigabytePages_Dynamic256GiB()
    {
        // [V] qemu64,vendor=GenuineIntel,phys-bits=41,+pdpe1gb: BAR at 0x1c000000000.
        var w = Window(41, CpuVendor.Intel, gigabytePages: true);
        Assert.Equal(0x1C0_0000_0000UL, w.Base);
        Assert.Equal(256 * GiB, w.Size);
    }

    [Theory]
    [InlineData(39, 0x70_0000_0000UL, 64UL << 30)]          // Intel desktop: only 64 GiB
    [InlineData(46, 0x3800_0000_0000UL, 8UL << 40)]          // REFERENCE §6.2 [V]: 8 TiB at 0x380000000000
    [InlineData(48, 0x7000_0000_0000UL, 16UL << 40)]         // capped at 47 bits
    [InlineData(52, 0x7000_0000_0000UL, 16UL << 40)]
    public void TrustedIntel_DynamicWindowAtTheTop(int bits, ulong expectedBase, ulong expectedSize)
    {
        var w = Window(bits, CpuVendor.Intel, host: new HostCpu(52, CpuVendor.Intel, true));
        Assert.Equal(MmioWindowKind.Dynamic, w.Kind);
        Assert.Equal(expectedBase, w.Base);
        Assert.Equal(expectedSize, w.Size);
        Assert.Equal(expectedSize, w.UsableBytes);
    }

    [Fact]
    public void ApertureSmallerThanTheDynamicWindow_IsIgnored()
    {
        var w = Window(46, CpuVendor.Intel, apertureMiB: 262144, host: IntelXeon46);
        Assert.Equal(MmioWindowKind.Dynamic, w.Kind);
        Assert.Equal(8 * TiB, w.Size);
    }

    [Fact]
    public void ApertureLargerThanTheDynamicWindow_OpensAClassicWindowAlignedToItsSize()
    {
        // REFERENCE §6.2 [V]: AMD 40 bits + X-PciMmio64Mb=524288 -> classic 512 GiB at 0x8000000000.
        var w = Window(40, CpuVendor.Amd, apertureMiB: 524288);
        Assert.Equal(MmioWindowKind.Classic, w.Kind);
        Assert.Equal(0x80_0000_0000UL, w.Base);
        Assert.Equal(512 * GiB, w.Size);
        Assert.Equal(500 * GiB, w.UsableBytes);   // its top 12 GiB are the AMD HT hole
    }

    [Fact]
    public void UntrustedClassicWindow_BeyondTheGuestsBits_IsNotUsable()
    {
        // Intel 40 bits, 1 TiB aperture: base 1 TiB, all of it above 2^40.
        var w = Window(40, CpuVendor.Intel, apertureMiB: 1024 * 1024);
        Assert.Equal(1 * TiB, w.Base);
        Assert.Equal(0UL, w.UsableBytes);
        Assert.Contains("guest CPU has 40", w.Limit);
    }

    [Fact]
    public void UnderKvm_TheHostsBitsCutTheWindow()
    {
        // A guest told 46 bits on a 39-bit host: QEMU allows it under KVM but EPT cannot map above 2^39.
        var w = Window(46, CpuVendor.Intel, accel: VmAccelerator.Kvm, host: IntelDesktop39);
        Assert.Equal(0UL, w.UsableBytes);
        Assert.Contains("host CPU has 39", w.Limit);
    }

    [Fact]
    public void OutOfRangeAperture_IsIgnoredAsOvmfDoes()
    {
        var w = Window(40, CpuVendor.Intel, apertureMiB: OvmfFirmware.MaxApertureMiB + 1);
        Assert.Equal(32 * GiB, w.Size);
    }

    [Theory]
    [InlineData(512UL << 20, 0UL, 0, 4UL << 30)]                    // all RAM below 4 GiB
    [InlineData(2816UL << 20, 0UL, 0, (4UL << 30) + (768UL << 20))]  // >= 2816 MiB: 2 GiB low, the rest above 4 GiB
    [InlineData(16UL << 30, 0UL, 0, 18UL << 30)]
    [InlineData(16UL << 30, 32UL << 30, 4, (18UL + 16 + 4) << 30)]  // hot-plug area: maxMemory - memory + 1 GiB per slot
    public void FirstNonRamAddress_FollowsQ35Layout(ulong memory, ulong maxMemory, int slots, ulong expected)
    {
        var vm = new VmMmioSettings { MemoryBytes = memory, MaxMemoryBytes = maxMemory, MemorySlots = slots };
        Assert.Equal(expected, OvmfFirmware.FirstNonRamAddress(vm));
    }

    [Fact]
    public void LargeRam_MovesTheClassicWindowUp()
    {
        // 600 GiB of RAM ends at 602 GiB: a 256 GiB window aligns up to 768 GiB.
        var w = Window(40, CpuVendor.Intel, apertureMiB: 262144, memory: 600 * GiB);
        Assert.Equal(768 * GiB, w.Base);
        Assert.Equal(256 * GiB, w.UsableBytes);
    }
}
