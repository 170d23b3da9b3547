using Gallium.Pci.Mmio;
using static Gallium.Pci.Tests.Mmio.GpuBars;

namespace Gallium.Pci.Tests.Mmio;

public sealed class MmioPlannerTests
{
    static MmioPlan Plan(VmMmioSettings vm, HostCpu host, int spare, params PciDevice[] devices) =>
        MmioPlanner.Plan(vm, host, devices, spare);

    static MaxPhysAddr? OnlyMaxPhysAddr(MmioPlan plan) => Assert.Single(plan.Changes, c => c.Kind == MmioChangeKind.MaxPhysAddr).MaxPhysAddr;

    // ---- nothing to do ----------------------------------------------------------------------------------------

    [Fact]
    public void NoLargeBars_NotNeeded()
    {
        var plan = Plan(Vm(), IntelXeon46, 4, NicWith32BitBars(), Rtx4090Audio());
        Assert.Equal(MmioPlanOutcome.NotNeeded, plan.Outcome);
        Assert.Empty(plan.Bars);
        Assert.Equal(0UL, plan.NeededBytes);
        Assert.Contains("no 64-bit prefetchable BAR", plan.Reason);
    }

    [Fact]
    public void Rtx4090WithoutResizableBar_FitsTheClassic32GiBWindow()
    {
        var plan = Plan(Vm(), IntelXeon46, 4, Rtx4090(resizableBar: false), Rtx4090Audio());
        Assert.Equal(MmioPlanOutcome.NotNeeded, plan.Outcome);
        Assert.Equal(MmioWindowKind.Classic, plan.CurrentWindow!.Kind);
        Assert.Equal(40, plan.GuestAddressBits);
        Assert.Contains("Nothing to change", plan.Reason);
    }

    [Fact]
    public void H100_HostPassthroughOnAXeon_AlreadyGets8TiB()
    {
        var plan = Plan(Vm(VmCpuMode.HostPassthrough), IntelXeon46, 6, H100());
        Assert.Equal(MmioPlanOutcome.NotNeeded, plan.Outcome);
        Assert.Equal(46, plan.GuestAddressBits);
        Assert.Equal(8 * TiB, plan.CurrentWindow!.Size);
        Assert.Equal(256 * GiB, plan.NeededBytes);
    }

    [Theory]
    [InlineData("A100-40")]
    [InlineData("4090-rebar")]
    public void AmdHostModel_40BitsTrusted_HoldsUpTo64GiBBars(string gpu)
    {
        // AMD vCPU with 40 bits: dynamic 128 GiB, 116 GiB usable below the HT hole (REFERENCE §6.1).
        var device = gpu == "A100-40" ? A100_40() : Rtx4090(resizableBar: true);
        var plan = Plan(Vm(), AmdEpyc48, 6, device);
        Assert.Equal(MmioPlanOutcome.NotNeeded, plan.Outcome);
        Assert.Equal(MmioWindowKind.Dynamic, plan.CurrentWindow!.Kind);
    }

    // ---- host-model / host-passthrough: maxphysaddr passthrough ------------------------------------------------

    [Fact]
    public void H100_IntelHostModel_GetsMaxPhysAddrPassthrough()
    {
        var plan = Plan(Vm(), IntelXeon46, 6, H100());
        Assert.Equal(MmioPlanOutcome.FixNeeded, plan.Outcome);
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Passthrough), OnlyMaxPhysAddr(plan));
        Assert.Single(plan.Changes);
        Assert.Equal(40, plan.GuestAddressBits);
        Assert.Equal(46, plan.FixedGuestAddressBits);
        Assert.Equal(MmioWindowKind.Classic, plan.CurrentWindow!.Kind);
        Assert.Equal(32 * GiB, plan.CurrentWindow.Size);
        Assert.Equal(0x3800_0000_0000UL, plan.FixedWindow!.Base);
        Assert.Equal([1, 3], plan.Bars.Select(b => b.Bar.Index));
        Assert.Equal(128 * GiB, plan.Bars[0].Bar.Size);
        // The -WhatIf line names the need, the window now and the fix.
        Assert.Contains("256 GiB", plan.Reason);
        Assert.Contains("0000:65:00.0 BAR1 128 GiB, BAR3 32 MiB", plan.Reason);
        Assert.Contains("not trusted by OVMF", plan.Reason);
        Assert.Contains("<maxphysaddr mode='passthrough'/>", plan.Reason);
    }

    [Fact]
    public void H100_AmdHostModel_40BitWindowTooSmall_GetsPassthrough()
    {
        var plan = Plan(Vm(), AmdEpyc48, 6, H100());
        Assert.Equal(MaxPhysAddrMode.Passthrough, OnlyMaxPhysAddr(plan)!.Mode);
        Assert.Equal(16 * TiB, plan.FixedWindow!.Size);   // 48 host bits, OVMF caps at 47
    }

    [Fact]
    public void H100_HostPassthroughOn39BitDesktop_NeedsTheOvmfApertureAlone()
    {
        // 39 bits are trusted for Intel but give only 64 GiB; a 256 GiB classic window at 256 GiB ends exactly at 2^39.
        var plan = Plan(Vm(VmCpuMode.HostPassthrough), IntelDesktop39, 4, H100());
        var change = Assert.Single(plan.Changes);
        Assert.Equal(MmioChangeKind.OvmfAperture, change.Kind);
        Assert.Equal(262144UL, change.ApertureMiB);
        Assert.Equal(256 * GiB, plan.FixedWindow!.Base);
        Assert.Equal(64 * GiB, plan.CurrentWindow!.Size);
    }

    [Fact]
    public void B300_HostModel_IntelXeon_Passthrough8TiB()
    {
        var plan = Plan(Vm(), IntelXeon46, 8, B300());
        Assert.Equal(1 * TiB, plan.NeededBytes);
        Assert.Equal(MaxPhysAddrMode.Passthrough, OnlyMaxPhysAddr(plan)!.Mode);
    }

    [Fact]
    public void EightH100s_HostModel_FitAfterPassthrough()
    {
        var gpus = Enumerable.Range(0, 8).Select(i => H100($"0000:{0x18 + i * 0x10:x2}:00.0")).ToArray();
        var plan = Plan(Vm(), IntelXeon46, 2, gpus);
        Assert.Equal(2 * TiB, plan.NeededBytes);
        Assert.Equal(16, plan.Bars.Count);
        Assert.Equal(MmioPlanOutcome.FixNeeded, plan.Outcome);
        Assert.Equal(MaxPhysAddrMode.Passthrough, OnlyMaxPhysAddr(plan)!.Mode);
    }

    // ---- custom models: maxphysaddr emulate ---------------------------------------------------------------------

    [Theory]
    [InlineData("H100", 41)]    // 2^38 = 256 GiB
    [InlineData("H200", 42)]    // 512 GiB
    [InlineData("B300", 43)]    // 1 TiB
    public void CustomServerModel_GetsTheSmallestTrustedEmulatedWidth(string gpu, int bits)
    {
        var device = gpu switch { "H100" => H100(), "H200" => H200(), _ => B300() };
        var plan = Plan(Vm(VmCpuMode.Custom, "Skylake-Server-IBRS"), IntelXeon46, 4, device);
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Emulate, bits), OnlyMaxPhysAddr(plan));
        Assert.Single(plan.Changes);
        Assert.Equal(bits, plan.FixedGuestAddressBits);
        Assert.Equal(MmioWindowKind.Dynamic, plan.FixedWindow!.Kind);
    }

    [Fact]
    public void CustomModelWithoutGigabytePages_EmulateCannotHelp_ApertureAlone()
    {
        // OVMF caps a width it trusts at 40 bits without pdpe1gb: 128 GiB at most. Untrusted 40 bits + a 256 GiB
        // aperture gives [256 GiB, 512 GiB) instead.
        var plan = Plan(Vm(VmCpuMode.Custom, "Haswell-noTSX"), IntelXeon46, 4, H100());
        var change = Assert.Single(plan.Changes);
        Assert.Equal(MmioChangeKind.OvmfAperture, change.Kind);
        Assert.Equal(262144UL, change.ApertureMiB);
        Assert.Contains("X-PciMmio64Mb,string=262144", change.Description);
    }

    [Fact]
    public void CustomModelWithGigabytePagesFeature_TrustsTheFeature()
    {
        var vm = Vm(VmCpuMode.Custom, "Haswell-noTSX") with { GigabytePagesFeature = true };
        var plan = Plan(vm, IntelXeon46, 4, H100());
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Emulate, 41), OnlyMaxPhysAddr(plan));
    }

    [Fact]
    public void NoCpuElement_Qemu64UnderKvmReportsTheHostsVendor()
    {
        // qemu64 under KVM on an Intel host: GenuineIntel, 40 bits, untrusted: classic 32 GiB. Without pdpe1gb OVMF caps
        // an emulated width at 40 bits (128 GiB): enough for an A100 40 GB, not for an H100 (aperture instead).
        var vm = Vm(VmCpuMode.None);
        Assert.Equal(CpuVendor.Intel, GuestCpu.Resolve(vm, IntelXeon46).Vendor);
        var a100 = Plan(vm, IntelXeon46, 0, A100_40());
        Assert.Equal(32 * GiB, a100.CurrentWindow!.Size);
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Emulate, 41), OnlyMaxPhysAddr(a100));
        Assert.Equal(0xE0_0000_0000UL, a100.FixedWindow!.Base);
        var h100 = Plan(vm, IntelXeon46, 0, H100());
        Assert.Equal(262144UL, Assert.Single(h100.Changes).ApertureMiB);
    }

    [Fact]
    public void ExistingUndersizedAperture_IsReplacedByALargerOne()
    {
        var vm = Vm(VmCpuMode.Custom, "Haswell") with { OvmfApertureMiB = 65536 };
        var plan = Plan(vm, IntelXeon46, 0, H100());
        Assert.Equal(64 * GiB, plan.CurrentWindow!.Size);
        Assert.Equal(262144UL, Assert.Single(plan.Changes).ApertureMiB);
    }

    [Fact]
    public void UsersOwnWidth_IsKeptWhenAnApertureAloneFits()
    {
        // host-passthrough held at 39 bits on a 46-bit host (VT-d 39-bit case): a 256 GiB aperture at 256 GiB fits 2^39.
        var vm = Vm(VmCpuMode.HostPassthrough) with { MaxPhysAddr = new MaxPhysAddr(MaxPhysAddrMode.Emulate, 39) };
        var plan = Plan(vm, IntelXeon46, 2, H100());
        Assert.Equal(39, plan.GuestAddressBits);
        var change = Assert.Single(plan.Changes);
        Assert.Equal(MmioChangeKind.OvmfAperture, change.Kind);
        Assert.Equal(39, plan.FixedGuestAddressBits);
        // Without a user-set width the CPU fix comes first.
        Assert.Equal(MmioChangeKind.MaxPhysAddr, Assert.Single(Plan(Vm(), IntelXeon46, 2, H100()).Changes).Kind);
    }

    // ---- AMD: the HyperTransport hole ----------------------------------------------------------------------------

    [Fact]
    public void AmdCustomModel_128GiBNeed_AvoidsTheHtHoleWithMoreBits()
    {
        // EPYC custom model, 40 bits: the dynamic 128 GiB window has 116 GiB below the HT hole, 120 GiB are needed;
        // 41 bits put a 256 GiB window above 1 TiB.
        var plan = Plan(Vm(VmCpuMode.Custom, "EPYC-Rome"), AmdEpyc48, 0,
            TestDev(64 * GiB, "0000:01:00.0"), TestDev(32 * GiB, "0000:02:00.0"), TestDev(16 * GiB, "0000:03:00.0"), TestDev(8 * GiB, "0000:04:00.0"));
        Assert.Equal(116 * GiB, plan.CurrentWindow!.UsableBytes);
        Assert.Equal(128 * GiB, plan.NeededBytes);
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Emulate, 41), OnlyMaxPhysAddr(plan));
        Assert.True(plan.FixedWindow!.Base >= OvmfFirmware.AmdHyperTransportEnd);
    }

    [Fact]
    public void AmdCustomModelWithoutGigabytePages_FixedApertureStaysBelowTheHtHole()
    {
        var vm = Vm(VmCpuMode.Custom, "Opteron_G3");
        var plan = Plan(vm, AmdEpyc48, 0, H100());
        var change = Assert.Single(plan.Changes);
        Assert.Equal(262144UL, change.ApertureMiB);
        Assert.True(plan.FixedWindow!.End <= OvmfFirmware.AmdHyperTransportStart);
    }

    // ---- TCG (the boot proof's cases) ----------------------------------------------------------------------------

    [Fact]
    public void Tcg_Maximum_256GiBBar_EmulatesWidth42()
    {
        var vm = Vm(VmCpuMode.Maximum) with { Accelerator = VmAccelerator.Tcg, MemoryBytes = 512 * MiB };
        var plan = Plan(vm, AmdEpyc48, 1, TestDev(256 * GiB));
        Assert.Equal(CpuVendor.Amd, GuestCpu.Resolve(vm, AmdEpyc48).Vendor);
        Assert.Equal(0xE0_0000_0000UL, plan.CurrentWindow!.Base);
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Emulate, 42), OnlyMaxPhysAddr(plan));
        Assert.Equal(0x380_0000_0000UL, plan.FixedWindow!.Base);
    }

    [Fact]
    public void Tcg_HostModel_PassthroughWouldBeIgnored_SoEmulate()
    {
        var vm = Vm() with { Accelerator = VmAccelerator.Tcg };
        var plan = Plan(vm, AmdEpyc48, 0, H100());
        Assert.Equal(MaxPhysAddrMode.Emulate, OnlyMaxPhysAddr(plan)!.Mode);
    }

    [Fact]
    public void Tcg_Qemu64Intel_64GiB_Emulate41_256GiB_Aperture()
    {
        var vm = Vm(VmCpuMode.Custom, "qemu64") with { Accelerator = VmAccelerator.Tcg, CpuVendorId = "GenuineIntel", MemoryBytes = 512 * MiB };
        var small = Plan(vm, AmdEpyc48, 1, TestDev(64 * GiB));
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Emulate, 41), OnlyMaxPhysAddr(small));
        Assert.Equal(0xE0_0000_0000UL, small.FixedWindow!.Base);   // capped to 40 bits: qemu64 has no pdpe1gb
        var large = Plan(vm, AmdEpyc48, 1, TestDev(256 * GiB));
        Assert.Equal(524288UL, Assert.Single(large.Changes).ApertureMiB);
        Assert.Equal(0x80_0000_0000UL, large.FixedWindow!.Base);
    }

    // ---- refusals -------------------------------------------------------------------------------------------------

    [Fact]
    public void SeaBios_LargeBar_Refused()
    {
        var vm = Vm() with { Firmware = VmFirmware.SeaBios };
        var plan = Plan(vm, IntelXeon46, 4, H100());
        Assert.Equal(MmioPlanOutcome.Refused, plan.Outcome);
        Assert.Empty(plan.Changes);
        Assert.Null(plan.CurrentWindow);
        var e = Assert.Throws<GalliumException>(plan.ThrowIfRefused);
        Assert.Equal("VmFirmwareNotUefi", e.ErrorId);
        Assert.Equal("gpu1", e.Target);
        Assert.Contains("firmware='efi'", e.RecommendedAction);
    }

    [Fact]
    public void SeaBios_SmallBars_NotNeeded()
    {
        var vm = Vm() with { Firmware = VmFirmware.SeaBios };
        Assert.Equal(MmioPlanOutcome.NotNeeded, Plan(vm, IntelXeon46, 4, Rtx4090(resizableBar: false)).Outcome);
    }

    [Fact]
    public void TwoH200sOnA39BitHost_Refused_SaysHowManyBitsAreNeeded()
    {
        var plan = Plan(Vm(VmCpuMode.HostPassthrough), IntelDesktop39, 2, H200("0000:01:00.0"), H200("0000:02:00.0"));
        Assert.Equal(MmioPlanOutcome.Refused, plan.Outcome);
        Assert.Equal(1 * TiB, plan.NeededBytes);
        var e = plan.Refusal!;
        Assert.Equal("MmioWindowBeyondHostAddressBits", e.ErrorId);
        Assert.Equal(ErrorKind.LimitsExceeded, e.Kind);
        Assert.Contains("at least 41 physical address bits", e.Message);
        Assert.Contains("39 physical address bits", e.Message);
    }

    [Fact]
    public void CustomModelWithoutGigabytePages_1TiBNeed_RefusedWithTheFeatureToAdd()
    {
        // No 1 GiB pages: OVMF stops at 2^40 whatever the width, and a 1 TiB window cannot sit below 1 TiB.
        var plan = Plan(Vm(VmCpuMode.Custom, "Haswell"), IntelXeon46, 0, B300());
        Assert.Equal(MmioPlanOutcome.Refused, plan.Outcome);
        Assert.Equal("MmioWindowTooSmall", plan.Refusal!.ErrorId);
        Assert.Contains("pdpe1gb", plan.Refusal.RecommendedAction);
        // With the feature the same VM is fixable by width alone.
        var withFeature = Plan(Vm(VmCpuMode.Custom, "Haswell") with { GigabytePagesFeature = true }, IntelXeon46, 0, B300());
        Assert.Equal(new MaxPhysAddr(MaxPhysAddrMode.Emulate, 43), OnlyMaxPhysAddr(withFeature));
    }

    [Fact]
    public void H200OnA39BitHost_FitsExactlyWithAnAperture_ButNotTwo()
    {
        var one = Plan(Vm(VmCpuMode.HostPassthrough), IntelDesktop39, 0, H100());
        Assert.Equal(MmioPlanOutcome.FixNeeded, one.Outcome);
        var h200 = Plan(Vm(VmCpuMode.HostPassthrough), IntelDesktop39, 0, H200());
        Assert.Equal(MmioPlanOutcome.Refused, h200.Outcome);   // 512 GiB window at 512 GiB ends at 2^40 > 2^39
    }

    // ---- closing the loop: a fixed definition plans "nothing to change" -----------------------------------------

    [Theory]
    [InlineData(VmCpuMode.HostModel, null)]
    [InlineData(VmCpuMode.Custom, "Skylake-Server")]
    [InlineData(VmCpuMode.Custom, "Haswell")]
    [InlineData(VmCpuMode.HostPassthrough, null)]
    public void ReplanningTheFixedSettings_NeedsNothing(VmCpuMode mode, string? model)
    {
        var host = mode == VmCpuMode.HostPassthrough ? IntelDesktop39 : IntelXeon46;
        var vm = Vm(mode, model);
        var plan = Plan(vm, host, 4, H100());
        Assert.Equal(MmioPlanOutcome.FixNeeded, plan.Outcome);
        foreach (var c in plan.Changes)
            vm = c.Kind == MmioChangeKind.MaxPhysAddr ? vm with { MaxPhysAddr = c.MaxPhysAddr } : vm with { OvmfApertureMiB = c.ApertureMiB };
        var again = Plan(vm, host, 4, H100());
        Assert.Equal(MmioPlanOutcome.NotNeeded, again.Outcome);
        Assert.Equal(plan.FixedWindow, again.CurrentWindow);
    }
}
