using Gallium.Pci.Host;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Caveats;

/// <summary>The caveats the inventory attaches to devices and groups, on simulated hosts built for each one.</summary>
public sealed class DeviceCaveatTests : SimulatedHostsTest
{
    private const long MiB = 1024 * 1024, GiB = 1024 * MiB;

    private static DeviceInventory Inventory(SimulatedKernel k) => new(k.CreateContext());
    private static PciDevice Device(SimulatedKernel k, string bdf) => Inventory(k).Read(PciAddress.Parse(bdf))!;
    private static IommuGroup GroupOf(SimulatedKernel k, string bdf) => Inventory(k).ReadGroup(k.GroupOf(bdf)!.Value)!;
    private static PciAddress A(string s) => PciAddress.Parse(s);

    [Fact]
    public void A_GPU_and_its_audio_function_reset_only_by_a_bus_reset_each_name_the_other_in_the_same_group()
    {
        var k = Standard();
        var group = GroupOf(k, StandardHost.Gpu);

        var resets = group.Caveats.OfType<BusResetOnlyCaveat>().ToArray();
        Assert.Equal([A(StandardHost.Gpu), A(StandardHost.GpuAudio)], resets.Select(c => c.Address!.Value));
        Assert.Equal([A(StandardHost.GpuAudio)], resets[0].SharedWith);
        Assert.Empty(resets[0].OutsideGroup);
        Assert.Contains("resets 0000:01:00.1 too (all in this IOMMU group)", resets[0].Reason);
        Assert.All(resets, c => Assert.Equal(PassthroughCaveatKind.BusResetOnly, c.Kind));
        // The standard host has remapping on and no ACS override: nothing host-wide.
        Assert.Equal(2, group.Caveats.Count);
        Assert.Equal(group.Devices.SelectMany(d => d.Caveats), group.Caveats);
    }

    [Fact]
    public void A_bus_reset_that_also_resets_a_function_of_another_group_says_which_one()
    {
        // Two ACS-isolated functions of one card behind one root port: separate groups, one secondary bus.
        var k = Build(HostTopology.Create()
            .RootComplex("00:00.0", 0x8086, 0x3e30, 0x060000, null)
            .RootPort("00:01.0", secondaryBus: 1)
            .Endpoint("01:00.0", 0x8086, 0x1572, 0x020000, "i40e").Acs(true).Mem64Bar(0, 8 * MiB).ResetMethods("bus")
            .Endpoint("01:00.1", 0x8086, 0x1572, 0x020000, "i40e").Acs(true).Mem64Bar(0, 8 * MiB).ResetMethods("flr bus"));
        Assert.NotEqual(k.GroupOf("01:00.0"), k.GroupOf("01:00.1"));

        var one = Device(k, "01:00.0").Caveats.OfType<BusResetOnlyCaveat>().Single();
        var all = Inventory(k).ReadAll().Single(d => d.Address == A("01:00.0")).Caveats.OfType<BusResetOnlyCaveat>().Single();

        Assert.Equal([A("01:00.1")], one.OutsideGroup);
        Assert.Contains("0000:01:00.1 is in another group", one.Reason);
        Assert.Contains("one VM holds every function", one.Reason);
        // The full listing and the single read agree.
        Assert.Equal(one.Reason, all.Reason);
        Assert.Equal(one.OutsideGroup, all.OutsideGroup);
        Assert.Empty(Device(k, "01:00.1").Caveats);   // flr first: a clean reset exists
    }

    [Fact]
    public void An_endpoint_with_an_empty_reset_method_list_has_no_reset_but_a_kernel_without_reset_method_claims_nothing()
    {
        var k = Build(HostTopology.Create()
            .RootComplex("00:00.0", 0x8086, 0x3e30, 0x060000, null)
            .RootPort("00:01.0", secondaryBus: 1).Endpoint("01:00.0", 0x1002, 0x73bf, 0x030000, null).Mem64Bar(0, 16 * GiB).ResetMethods("")
            .RootPort("00:02.0", secondaryBus: 2).Endpoint("02:00.0", 0x1002, 0x73bf, 0x030000, null).Mem64Bar(0, 16 * GiB).ResetWithoutMethodList());

        var none = Assert.IsType<NoResetCaveat>(Assert.Single(Device(k, "01:00.0").Caveats));
        Assert.Contains("reset_method is empty", none.Reason);
        Assert.Contains("vendor-reset", none.Remedy);
        Assert.NotNull(none.Security);
        Assert.Empty(Device(k, "02:00.0").Caveats);
        Assert.Empty(Device(k, "00:01.0").Caveats);  // a root port has no reset methods: bridges are never passed through
    }

    [Fact]
    public void The_chipset_group_marks_host_bridge_lpc_and_smbus_and_never_adds_reset_noise()
    {
        var k = Standard();
        var group = GroupOf(k, StandardHost.Smbus);

        var chipset = group.Caveats.OfType<ChipsetFunctionCaveat>().ToArray();
        Assert.Equal([A(StandardHost.HostBridge), A(StandardHost.Lpc), A(StandardHost.Smbus)], chipset.Select(c => c.Address!.Value));
        Assert.Equal([(ushort)0x0600, (ushort)0x0601, (ushort)0x0c05], chipset.Select(c => c.ClassCode));
        Assert.Equal(3, group.Caveats.Count);  // the SMBus has no reset method, but a chipset function is refused anyway
    }

    [Theory]
    [InlineData(0x060000u, true)]   // host bridge
    [InlineData(0x060100u, true)]   // ISA bridge (LPC)
    [InlineData(0x068000u, true)]   // other bridge
    [InlineData(0x0c0500u, true)]   // SMBus
    [InlineData(0x060400u, false)]  // PCI-to-PCI bridge: stays on pcieport, not a chipset function
    [InlineData(0x060700u, false)]  // CardBus bridge
    [InlineData(0x060900u, false)]  // semi-transparent bridge
    [InlineData(0x0c0330u, false)]  // USB xHCI
    [InlineData(0x030000u, false)]
    public void Chipset_classes_are_06xx_except_pci_bridges_and_0c05(uint classCode, bool chipset) =>
        Assert.Equal(chipset, CaveatReader.IsChipsetClass(classCode));

    [Fact]
    public void The_boot_VGA_device_and_an_endpoint_without_reset_carry_their_caveats()
    {
        var k = Standard();
        Assert.IsType<BootVgaCaveat>(Device(k, StandardHost.OnboardVga).Caveats.Single());
        Assert.IsType<NoResetCaveat>(Device(k, StandardHost.Usb).Caveats.Single());
        Assert.Empty(Device(k, StandardHost.FreeNic).Caveats);        // "pm bus": a PM reset first
        Assert.Empty(Device(k, StandardHost.UnboundDevice).Caveats);  // "pm"
    }

    [Theory]
    [InlineData("efifb", "video=efifb:off|initcall_blacklist=sysfb_init")]
    [InlineData("vesafb", "video=vesafb:off|initcall_blacklist=sysfb_init")]
    [InlineData("BOOTFB", "initcall_blacklist=sysfb_init")]
    [InlineData("simpledrm", "initcall_blacklist=sysfb_init")]
    [InlineData("simple-framebuffer", "initcall_blacklist=sysfb_init")]
    public void A_firmware_framebuffer_in_the_GPUs_VRAM_BAR_is_a_caveat_with_its_range_and_the_parameter_that_frees_it(string holder, string parameters)
    {
        var k = Build(GpuWithFramebuffer(holder));
        var gpu = Device(k, "01:00.0");
        var bar1 = gpu.Bars.Single(b => b.Index == 1);

        var fb = gpu.Caveats.OfType<FirmwareFramebufferCaveat>().Single();
        Assert.Equal(holder, fb.Holder);
        Assert.Equal(1, fb.BarIndex);                 // the VRAM: the largest prefetchable BAR
        Assert.Equal(bar1.Start, fb.Start);
        Assert.True(fb.End < bar1.Start + bar1.Size);
        Assert.Equal(parameters.Split('|'), fb.KernelParameters);
        Assert.Contains($"({holder}) holds BAR 1 [mem 0x{bar1.Start:x}-0x{fb.End:x}]", fb.Reason);
        Assert.Contains("can't reserve", fb.Reason);
        Assert.Contains(parameters.Split('|')[0], fb.Remedy);
        Assert.Contains(GroupOf(k, "01:00.0").Caveats, c => c is FirmwareFramebufferCaveat);
        Assert.DoesNotContain(Device(k, "01:00.1").Caveats, c => c is FirmwareFramebufferCaveat);
    }

    internal static HostTopology GpuWithFramebuffer(string holder, int bar = -1) => HostTopology.Create()
        .RootComplex("00:00.0", 0x8086, 0x3e30, 0x060000, null)
        .RootPort("00:01.0", secondaryBus: 1)
        .Endpoint("01:00.0", 0x10de, 0x2684, 0x030000, null).Mem32Bar(0, 16 * MiB).Mem64Bar(1, 32 * GiB).Mem64Bar(3, 32 * MiB)
            .BootVga(true).ResetMethods("bus").FirmwareFramebuffer(holder, bar)
        .Endpoint("01:00.1", 0x10de, 0x22ba, 0x040300, "snd_hda_intel").Mem32Bar(0, 16 * 1024).ResetMethods("bus");

    [Fact]
    public void A_framebuffer_in_another_BAR_is_reported_for_that_BAR_and_an_unprivileged_iomem_hides_it()
    {
        var k = Build(GpuWithFramebuffer("efifb", bar: 0));
        var fb = Device(k, "01:00.0").Caveats.OfType<FirmwareFramebufferCaveat>().Single();
        Assert.Equal(0, fb.BarIndex);

        // Without CAP_SYS_ADMIN the kernel prints every address as 0: nothing can be matched, nothing is claimed.
        string iomem = File.ReadAllText(k.ProcRoot + "/iomem");
        File.WriteAllText(k.ProcRoot + "/iomem", System.Text.RegularExpressions.Regex.Replace(iomem, "[0-9a-f]+-[0-9a-f]+ :", "00000000-00000000 :"));
        Assert.DoesNotContain(Device(k, "01:00.0").Caveats, c => c is FirmwareFramebufferCaveat);
    }

    [Fact]
    public void The_ACS_override_on_the_command_line_marks_every_group_with_an_endpoint_and_names_the_exact_parameter()
    {
        var k = Standard(t => t.ExtraCommandLine("pcie_acs_override=downstream,multifunction -- pcie_acs_override=id:8086:1234"));
        var groups = Inventory(k).ReadGroups();

        foreach (var g in groups)
        {
            var acs = g.Caveats.OfType<AcsOverrideCaveat>().ToArray();
            if (g.Devices.All(d => d.IsBridge)) { Assert.Empty(acs); continue; }
            var c = Assert.Single(acs);
            Assert.Equal("pcie_acs_override=downstream,multifunction", c.Parameter);  // what follows "--" belongs to init
            Assert.Null(c.Address);
            Assert.Contains("peer-to-peer", c.Security);
            Assert.Contains("Remove pcie_acs_override=downstream,multifunction", c.Remedy);
        }
        Assert.All(Inventory(k).ReadAll(), d => Assert.DoesNotContain(d.Caveats, c => c is AcsOverrideCaveat));  // host-wide: on groups
    }

    [Theory]
    [InlineData(true, false, null, false)]    // remapping on: nothing to say
    [InlineData(false, false, false, true)]   // off, N: VFIO refuses, the VM does not start
    [InlineData(false, true, true, true)]     // off, Y: works, unsafe
    public void Unsafe_interrupts_follow_remapping_and_the_loaded_modules_allow_unsafe_interrupts(bool remapping, bool allow, bool? reported, bool caveat)
    {
        var k = Standard(t => t.InterruptRemapping(remapping).AllowUnsafeInterrupts(allow));
        var found = GroupOf(k, StandardHost.FreeNic).Caveats.OfType<UnsafeInterruptsCaveat>().SingleOrDefault();

        Assert.Equal(caveat, found is not null);
        if (found is null) return;
        Assert.Equal(reported, found.AllowUnsafeInterrupts);
        Assert.Contains(allow ? "allow_unsafe_interrupts=Y" : "VM does not start", found.Reason);
        Assert.Contains("interrupt", found.Security);
    }

    [Fact]
    public void With_vfio_not_loaded_allow_unsafe_interrupts_comes_from_the_command_line_or_is_unknown()
    {
        var unknown = Standard(t => t.InterruptRemapping(false).VfioPciLoaded(false));
        var fromCmdline = Standard(t => t.InterruptRemapping(false).VfioPciLoaded(false).ExtraCommandLine("vfio_iommu_type1.allow_unsafe_interrupts=1"));

        Assert.False(unknown.Exists(HostIsolation.AllowUnsafeInterruptsPath));
        Assert.Null(HostIsolation.Read(unknown.CreateContext()).AllowUnsafeInterrupts);
        Assert.True(HostIsolation.Read(unknown.CreateContext()).VfioRefusesDevices);
        Assert.True(HostIsolation.Read(fromCmdline.CreateContext()).AllowUnsafeInterrupts);
        Assert.False(HostIsolation.Read(fromCmdline.CreateContext()).VfioRefusesDevices);
    }

    [Fact]
    public void Loading_vfio_writes_the_modules_parameter_as_the_kernel_does()
    {
        var k = Standard(t => t.VfioPciLoaded(false).AllowUnsafeInterrupts(true));
        Assert.Null(k.ReadText(HostIsolation.AllowUnsafeInterruptsPath));
        Assert.Null(k.Load("vfio-pci"));
        Assert.Equal("Y\n", k.ReadText(HostIsolation.AllowUnsafeInterruptsPath));
    }
}
