using Gallium.Pci.Host;

namespace Gallium.Pci.Tests.Inventory;

public sealed class ReadinessProbeTests : IDisposable
{
    private const string IntelCpu = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme vmx sse2\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n";
    private const string AmdCpu = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu svm sse2\n";
    private const string AmdVmCpu = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 hypervisor\n";
    private const string IrInterrupts =
        "            CPU0       CPU1\n   0:         45          0   IO-APIC   2-edge      timer\n" +
        "   9:          0          0   IR-IO-APIC    9-fasteoi   acpi\n 120:       1234          0  IR-PCI-MSI 327680-edge      xhci_hcd\n" +
        " NMI:          0          0   Non-maskable interrupts\n";
    private const string PlainInterrupts =
        "           CPU0       CPU1\n 24:          1          0  IO-APIC   5-edge      ACPI:Ged\n" +
        " 28:          0          0 PCI-MSIX-0000:00:01.0   0-edge      virtio0-config\n NMI:          0          0   Non-maskable interrupts\n";

    private readonly InventoryTree _t = new();

    public void Dispose() => _t.Dispose();

    private enum Iommu { FirmwareOff, TableOnly, On }

    private PassthroughReadiness Probe(string cpuinfo, Iommu state, string cmdline, bool root = true, bool vfio = true,
        string interrupts = IrInterrupts, bool acpi = true)
    {
        bool intel = cpuinfo.Contains("GenuineIntel", StringComparison.Ordinal);
        _t.ProcFile("cpuinfo", cpuinfo);
        _t.ProcFile("cmdline", cmdline + "\n");
        _t.ProcFile("interrupts", interrupts);
        if (acpi) foreach (string table in new[] { "APIC", "DSDT", "FACP", "MCFG" }) _t.Write($"firmware/acpi/tables/{table}", "");
        if (state != Iommu.FirmwareOff) _t.Write($"firmware/acpi/tables/{(intel ? "DMAR" : "IVRS")}", "");
        if (state == Iommu.On)
        {
            _t.Function("0000:00:02.0", 0x8086, 0x1521, 0x020000);
            _t.Group("0000:00:02.0", 0);
            Directory.CreateDirectory(_t.Full($"class/iommu/{(intel ? "dmar0" : "ivhd0")}"));
            Directory.CreateDirectory(_t.Full("module/vfio_pci"));
            Directory.CreateDirectory(_t.Full("bus/pci/drivers/vfio-pci"));
            _t.DevNode("vfio/vfio");
        }
        return new ReadinessProbe(_t.Context(root: root, vfioAvailable: vfio)).Probe();
    }

    [Fact]
    public void Intel_firmware_off_says_enable_VT_d()
    {
        var r = Probe(IntelCpu, Iommu.FirmwareOff, "BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet");
        Assert.Equal(CpuVendor.Intel, r.CpuVendor);
        Assert.False(r.FirmwareIommuTable);
        Assert.False(r.IommuEnabled);
        Assert.Equal(IommuProblem.DisabledInFirmware, r.IommuProblem);
        Assert.Contains("Enable VT-d", r.Remedy);
        Assert.DoesNotContain("AMD", r.Remedy);
        Assert.False(r.IsReady);
        Assert.Contains(r.Problems, p => p.Contains("disabled in the firmware") && p.Contains("DMAR"));
    }

    [Fact]
    public void Amd_firmware_off_says_enable_AMD_Vi_by_its_setup_names()
    {
        var r = Probe(AmdCpu, Iommu.FirmwareOff, "quiet");
        Assert.Equal(CpuVendor.Amd, r.CpuVendor);
        Assert.Equal(IommuProblem.DisabledInFirmware, r.IommuProblem);
        Assert.Contains("AMD-Vi", r.Remedy);
        Assert.Contains("'IOMMU'", r.Remedy);
        Assert.DoesNotContain("amd_iommu=on", r.Remedy);
        Assert.Contains(r.Problems, p => p.Contains("IVRS"));
    }

    [Fact]
    public void Firmware_off_in_a_virtual_machine_asks_the_hypervisor_for_a_virtual_IOMMU()
    {
        var r = Probe(AmdVmCpu, Iommu.FirmwareOff, "console=ttyS0 amd_iommu=off");
        Assert.True(r.IsVirtualMachine);
        Assert.Equal(IommuProblem.DisabledInFirmware, r.IommuProblem);
        Assert.Contains("virtual IOMMU", r.Remedy);
        Assert.Contains("intel-iommu", r.Remedy);
        Assert.Contains("remove 'amd_iommu=off'", r.Remedy);  // the kernel would still refuse afterwards
    }

    [Theory]
    [InlineData("BOOT_IMAGE=/vmlinuz intel_iommu=off quiet", "intel_iommu=off")]
    [InlineData("intel_iommu=igfx_off,off", "intel_iommu=igfx_off,off")]
    [InlineData("intel_iommu=on intel_iommu=off", "intel_iommu=off")]
    public void Intel_command_line_off_says_replace_it_with_on(string cmdline, string offender)
    {
        var r = Probe(IntelCpu, Iommu.TableOnly, cmdline);
        Assert.True(r.FirmwareIommuTable);
        Assert.Equal(IommuProblem.DisabledOnKernelCommandLine, r.IommuProblem);
        Assert.Equal($"In the kernel command line, replace '{offender}' with intel_iommu=on: {ReadinessProbe.GrubHowTo}.", r.Remedy);
        Assert.Contains("GRUB_CMDLINE_LINUX", r.Remedy);
        Assert.Contains("update-grub", r.Remedy);
        Assert.Contains("reboot", r.Remedy);
        Assert.Equal(cmdline, r.KernelCommandLine);
    }

    [Fact]
    public void Intel_iommu_off_removes_as_well()
    {
        var r = Probe(IntelCpu, Iommu.TableOnly, "iommu=off");
        Assert.Equal(IommuProblem.DisabledOnKernelCommandLine, r.IommuProblem);
        Assert.StartsWith("In the kernel command line, remove 'iommu=off': edit GRUB_CMDLINE_LINUX", r.Remedy);
    }

    [Theory]
    [InlineData("amd_iommu=off", "In the kernel command line, remove 'amd_iommu=off': ")]
    [InlineData("iommu=off", "In the kernel command line, remove 'iommu=off': ")]
    [InlineData("amd_iommu=off iommu=pt,off", "In the kernel command line, remove 'amd_iommu=off' and 'iommu=pt,off': ")]
    public void Amd_command_line_off_says_remove_never_add_on(string cmdline, string expectedStart)
    {
        var r = Probe(AmdCpu, Iommu.TableOnly, cmdline);
        Assert.Equal(IommuProblem.DisabledOnKernelCommandLine, r.IommuProblem);
        Assert.StartsWith(expectedStart, r.Remedy);
        Assert.DoesNotContain("amd_iommu=on", r.Remedy);
        Assert.Contains("GRUB_CMDLINE_LINUX", r.Remedy);
    }

    [Fact]
    public void Intel_table_present_but_kernel_default_off_says_add_intel_iommu_on()
    {
        var r = Probe(IntelCpu, Iommu.TableOnly, "quiet splash intel_iommu=on -- intel_iommu=off");  // after "--" is init's
        Assert.Equal(IommuProblem.NotEnabledByKernel, r.IommuProblem);
        Assert.Contains("already set", r.Remedy);
        var r2 = Probe(IntelCpu, Iommu.TableOnly, "quiet splash");
        Assert.Equal(IommuProblem.NotEnabledByKernel, r2.IommuProblem);
        Assert.StartsWith("Add intel_iommu=on to the kernel command line", r2.Remedy);
    }

    [Fact]
    public void Amd_table_present_but_kernel_off_never_suggests_amd_iommu_on_as_a_fix()
    {
        var r = Probe(AmdCpu, Iommu.TableOnly, "quiet");
        Assert.Equal(IommuProblem.NotEnabledByKernel, r.IommuProblem);
        Assert.Contains("dmesg", r.Remedy);
        Assert.Contains("Do not add amd_iommu=on", r.Remedy);
        Assert.DoesNotContain("Add amd_iommu=on", r.Remedy);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void IOMMU_on_with_vfio_is_ready(bool intel)
    {
        var r = Probe(intel ? IntelCpu : AmdCpu, Iommu.On, intel ? "intel_iommu=on iommu=pt" : "iommu=pt");
        Assert.True(r.IommuEnabled);
        Assert.Equal(IommuProblem.None, r.IommuProblem);
        Assert.Null(r.Remedy);
        Assert.Equal(1, r.IommuGroupCount);
        Assert.Equal([intel ? "dmar0" : "ivhd0"], r.IommuUnits);
        Assert.True(r.InterruptRemapping);
        Assert.True(r.VfioPciAvailable);
        Assert.True(r.VfioPciLoaded);
        Assert.True(r.VfioDeviceNode);
        Assert.True(r.IsRoot);
        Assert.Empty(r.Problems);
        Assert.True(r.IsReady);
    }

    [Fact]
    public void IOMMU_on_but_not_root_no_remapping_and_no_vfio_lists_each_problem()
    {
        var r = Probe(IntelCpu, Iommu.TableOnly, "quiet", root: false, vfio: false, interrupts: PlainInterrupts);
        Assert.False(r.VfioPciAvailable);
        Assert.Contains(r.Problems, p => p.Contains("not root"));
        Assert.Contains(r.Problems, p => p.Contains("no vfio-pci"));

        // Now with the IOMMU on: missing interrupt remapping is its own problem.
        _t.Function("0000:00:03.0", 0x8086, 0x1521, 0x020000);
        _t.Group("0000:00:03.0", 0);
        var on = new ReadinessProbe(_t.Context(root: false, vfioAvailable: false)).Probe();
        Assert.Equal(IommuProblem.None, on.IommuProblem);
        Assert.False(on.InterruptRemapping);
        Assert.Equal(3, on.Problems.Count);
        Assert.Contains(on.Problems, p => p.Contains("Interrupt remapping"));
        Assert.False(on.IsReady);
    }

    [Fact]
    public void No_ACPI_tables_or_an_unknown_CPU_is_unknown()
    {
        var r = Probe(IntelCpu, Iommu.FirmwareOff, "quiet", acpi: false);
        Assert.Equal(IommuProblem.Unknown, r.IommuProblem);
        Assert.NotNull(r.Remedy);
        Assert.Equal(CpuVendor.Other, ReadinessProbe.ParseCpuVendor("processor\t: 0\nCPU implementer\t: 0x41\n"));
    }

    [Fact]
    public void Cpu_vendor_and_hypervisor_from_cpuinfo()
    {
        Assert.Equal(CpuVendor.Intel, ReadinessProbe.ParseCpuVendor(IntelCpu));
        Assert.Equal(CpuVendor.Amd, ReadinessProbe.ParseCpuVendor(AmdCpu));
        Assert.Equal(CpuVendor.Amd, ReadinessProbe.ParseCpuVendor("vendor_id\t: HygonGenuine\n"));
        Assert.Equal(CpuVendor.Other, ReadinessProbe.ParseCpuVendor("vendor_id\t: CentaurHauls\n"));
        Assert.Equal(CpuVendor.Other, ReadinessProbe.ParseCpuVendor(null));
        Assert.True(ReadinessProbe.ParseHypervisor(AmdVmCpu));
        Assert.False(ReadinessProbe.ParseHypervisor(AmdCpu));
        Assert.False(ReadinessProbe.ParseHypervisor(null));
    }

    [Fact]
    public void Interrupt_remapping_from_proc_interrupts()
    {
        Assert.True(ReadinessProbe.ParseInterruptRemapping(IrInterrupts));
        Assert.True(ReadinessProbe.ParseInterruptRemapping(" 33:  0  0  IR-PCI-MSIX-0000:00:14.0    0-edge      xhci_hcd\n"));
        Assert.False(ReadinessProbe.ParseInterruptRemapping(PlainInterrupts));
        Assert.Null(ReadinessProbe.ParseInterruptRemapping(null));
        Assert.Null(ReadinessProbe.ParseInterruptRemapping(""));
        Assert.Null(ReadinessProbe.ParseInterruptRemapping("           CPU0\n NMI:  0  Non-maskable interrupts\n"));
    }

    [Theory]
    [InlineData("intel_iommu=off", CpuVendor.Intel, new[] { "intel_iommu=off" })]
    [InlineData("intel_iommu=off intel_iommu=on", CpuVendor.Intel, new string[0])]
    [InlineData("intel_iommu=off,on", CpuVendor.Intel, new string[0])]
    [InlineData("intel_iommu=sm_on", CpuVendor.Intel, new string[0])]
    [InlineData("intel_iommu=igfx_off", CpuVendor.Intel, new string[0])]
    [InlineData("amd_iommu=off", CpuVendor.Intel, new string[0])]
    [InlineData("amd_iommu=fullflush,off", CpuVendor.Amd, new[] { "amd_iommu=fullflush,off" })]
    [InlineData("amd_iommu=force_isolation", CpuVendor.Amd, new string[0])]
    [InlineData("intel_iommu=off", CpuVendor.Amd, new string[0])]
    [InlineData("iommu=pt iommu=off", CpuVendor.Amd, new[] { "iommu=off" })]
    [InlineData("iommu=pt", CpuVendor.Intel, new string[0])]
    [InlineData("iommu.passthrough=1 iommu=soft", CpuVendor.Intel, new string[0])]
    [InlineData("quiet -- iommu=off", CpuVendor.Intel, new string[0])]
    [InlineData("", CpuVendor.Intel, new string[0])]
    public void Command_line_parameters_that_turn_the_IOMMU_off(string cmdline, CpuVendor kind, string[] expected) =>
        Assert.Equal(expected, ReadinessProbe.IommuOffParameters(cmdline, kind));

    [Theory]
    [InlineData("vfio-pci.ko.xz", "vfio_pci")]
    [InlineData("vfio_pci.ko", "vfio_pci")]
    [InlineData("vfio-pci", "vfio_pci")]
    [InlineData("vfio-pci-core.ko.zst", "vfio_pci_core")]
    [InlineData("vfio.ko", "vfio")]
    public void Module_names_compare_as_modprobe_does(string name, string expected) =>
        Assert.Equal(expected, Modprobe.ModuleName(name));
}
