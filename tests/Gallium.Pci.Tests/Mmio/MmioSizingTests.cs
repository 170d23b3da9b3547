using Gallium.Pci.Mmio;
using static Gallium.Pci.Tests.Mmio.GpuBars;

namespace Gallium.Pci.Tests.Mmio;

public sealed class MmioSizingTests
{
    [Fact]
    public void H100_NeedsTheReferenceExample256GiB()
    {
        // REFERENCE §6.4 example: 128 GiB BAR1 + 32 MiB BAR3 (+16 MiB 32-bit BAR0, ignored) -> X-PciMmio64Mb=262144.
        var demands = MmioSizing.Demands([H100()]);
        Assert.Equal([1, 3], demands.Select(d => d.Bar.Index));
        Assert.Equal(256 * GiB, MmioSizing.Aperture(demands, spareRootPorts: 0));
        Assert.Equal(262144UL, MmioSizing.Aperture(demands, 0) >> 20);
    }

    [Fact]
    public void ThirtyTwoBitAndNonPrefetchableBarsNeverDriveTheWindow()
    {
        var demands = MmioSizing.Demands([NicWith32BitBars(), Rtx4090Audio()]);
        Assert.Empty(demands);
        Assert.Equal(0UL, MmioSizing.Aperture(demands, 4));
    }

    [Theory]
    [InlineData("A100-40", 128)]   // 64 GiB + 32 MiB + allowance -> next power of two
    [InlineData("A100-80", 256)]
    [InlineData("H100", 256)]
    [InlineData("H200", 512)]
    [InlineData("B300", 1024)]
    [InlineData("4090-rebar", 64)]  // 32 GiB BAR1 + 32 MiB BAR3 no longer fits the classic 32 GiB
    [InlineData("4090", 1)]         // 256 MiB BAR1: the 1 GiB minimum
    public void OneGpu_ApertureInGiB(string gpu, ulong expectedGiB)
    {
        PciDevice device = gpu switch
        {
            "A100-40" => A100_40(), "A100-80" => A100_80(), "H100" => H100(), "H200" => H200(), "B300" => B300(),
            "4090-rebar" => Rtx4090(resizableBar: true), _ => Rtx4090(resizableBar: false),
        };
        Assert.Equal(expectedGiB * GiB, MmioSizing.Aperture(MmioSizing.Demands([device]), spareRootPorts: 0));
    }

    [Fact]
    public void SeveralGpus_EachRootPortWindowIsAlignedToItsLargestBar()
    {
        // Four H100s: windows of 128 GiB + 32 MiB, each aligned to 128 GiB, land at 0, 256, 512, 768 GiB.
        var gpus = Enumerable.Range(0, 4).Select(i => H100($"0000:{0x18 + i:x2}:00.0")).ToList();
        var demands = MmioSizing.Demands(gpus);
        Assert.Equal(8, demands.Count);
        ulong required = MmioSizing.Required(demands, 0, 1 * TiB);
        Assert.Equal(768 * GiB + 128 * GiB + 32 * MiB + MmioSizing.EmulatedDeviceAllowance, required);
        Assert.Equal(1 * TiB, MmioSizing.Aperture(demands, 0));
    }

    [Fact]
    public void MixedGpus_PackLargestAlignmentFirst()
    {
        // H200 (256 GiB) then A100-40 (64 GiB): 256 GiB+32 MiB, aligned up to 320 GiB, + 64 GiB+32 MiB.
        var demands = MmioSizing.Demands([A100_40(), H200()]);
        Assert.Equal(256 * GiB, demands[0].Bar.Size);
        Assert.Equal(320 * GiB + 64 * GiB + 32 * MiB + MmioSizing.EmulatedDeviceAllowance, MmioSizing.Required(demands, 0, 512 * GiB));
        Assert.Equal(512 * GiB, MmioSizing.Aperture(demands, 0));
    }

    [Theory]
    [InlineData(32UL << 30, 0UL)]           // not above 32 GiB: no padding (observed: classic 32 GiB, spare port unpadded)
    [InlineData(128UL << 30, 512UL << 20)]  // observed [V]: spare root port got a 512 MiB 64-bit window in a 128 GiB window
    [InlineData(256UL << 30, 1UL << 30)]    // observed [V]: 1 GiB in a 256 GiB window
    [InlineData(8UL << 40, 32UL << 30)]
    [InlineData(100UL << 30, 512UL << 20)]  // 400 MiB rounds up to a power of two
    public void HotplugPadding_IsApertureOver256RoundedUp(ulong aperture, ulong expected) =>
        Assert.Equal(expected, MmioSizing.HotplugPadding(aperture));

    [Fact]
    public void SpareRootPorts_CanPushTheApertureUp()
    {
        // A 64 GiB BAR alone needs 128 GiB; with 64 spare ports each padded 512 MiB (=32 GiB) it still fits 128 GiB.
        // With 200 ports neither 128 GiB (100 GiB of padding) nor 256 GiB (200 GiB) holds it: 512 GiB (400 GiB) does.
        var demands = MmioSizing.Demands([TestDev(64 * GiB)]);
        Assert.Equal(128 * GiB, MmioSizing.Aperture(demands, 0));
        Assert.Equal(128 * GiB, MmioSizing.Aperture(demands, 64));
        Assert.Equal(512 * GiB, MmioSizing.Aperture(demands, 200));
        Assert.True(MmioSizing.Required(demands, 200, 512 * GiB) <= 512 * GiB);
        Assert.True(MmioSizing.Required(demands, 200, 256 * GiB) > 256 * GiB);
    }

    [Fact]
    public void PaddingIsAMinimumForAnOccupiedPort_NotAnAddition()
    {
        // A root port holding a 16 MiB BAR gets max(need, padding), as OVMF's PciBusDxe treats padding.
        var small = new PciDevice { Address = PciAddress.Parse("0000:02:00.0"), VendorId = 1, DeviceId = 1, Bars = [Bar64(0, 16 * MiB)] };
        var demands = MmioSizing.Demands([small]);
        Assert.Equal(1 * GiB + MmioSizing.EmulatedDeviceAllowance, MmioSizing.Required(demands, 0, 256 * GiB));
    }

    [Theory]
    [InlineData(1UL, 1UL)]
    [InlineData(3UL, 4UL)]
    [InlineData(1UL << 37, 1UL << 37)]
    [InlineData((1UL << 37) + 1, 1UL << 38)]
    public void PowerOfTwoCeiling(ulong value, ulong expected) => Assert.Equal(expected, MmioSizing.PowerOfTwoCeiling(value));
}
