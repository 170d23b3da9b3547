namespace Gallium.Pci.Testing;

/// <summary>Variations of the standard host. Settable properties so PowerShell can fill one from a hashtable.</summary>
public sealed class HostOptions
{
    /// <summary>"intel" (DMAR, vmx, dmar0) or "amd" (IVRS, svm, ivhd0, AMD chipset ids, ASPEED VGA).</summary>
    public string Cpu { get; set; } = "intel";
    /// <summary>Firmware publishes DMAR/IVRS (false = "IOMMU disabled in BIOS").</summary>
    public bool FirmwareIommu { get; set; } = true;
    /// <summary>The kernel enabled the IOMMU (false = intel_iommu=off / amd_iommu=off on the command line).</summary>
    public bool KernelIommu { get; set; } = true;
    /// <summary>iommu=pt on the command line: groups' type is identity.</summary>
    public bool IommuPassthrough { get; set; }
    public bool VfioPciLoaded { get; set; } = true;
    /// <summary>When set, Load("vfio-pci") returns this reason (e.g. "administratively prohibited").</summary>
    public string? VfioPciLoadFailure { get; set; }
    /// <summary>False: the kernel has no vfio-pci module at all.</summary>
    public bool VfioPciAvailable { get; set; } = true;
    /// <summary>Functions bound to vfio-pci (override vfio-pci) at boot, as a persisted Enable leaves them, e.g. the GPU and its audio.</summary>
    public string[] VfioDevices { get; set; } = [];
}

/// <summary>Addresses of the functions of <see cref="SimulatedHosts.Standard(string)"/> (same in every variant).</summary>
public static class StandardHost
{
    /// <summary>Host bridge; shares a group with <see cref="Lpc"/> and <see cref="Smbus"/>.</summary>
    public const string HostBridge = "0000:00:00.0";
    /// <summary>AMD variant only: the IOMMU's own function (class 0806, no IOMMU group, holds ivhd0).</summary>
    public const string AmdIommu = "0000:00:00.2";
    public const string GpuRootPort = "0000:00:01.0";
    /// <summary>RTX 4090 (10de:2684, nvidia): BAR0 16 MiB 32-bit, BAR1 32 GiB 64-bit pref, BAR3 32 MiB 64-bit pref, BAR5 I/O; boot_vga 0.</summary>
    public const string Gpu = "0000:01:00.0";
    /// <summary>The GPU's HDMI audio function (10de:22ba, snd_hda_intel); same group as <see cref="Gpu"/>.</summary>
    public const string GpuAudio = "0000:01:00.1";
    public const string ComputeGpuRootPort = "0000:00:01.1";
    /// <summary>H100 (10de:2330, class 030200, nvidia) with a 128 GiB BAR1, alone in its group.</summary>
    public const string ComputeGpu = "0000:02:00.0";
    /// <summary>On-board VGA (Intel UHD 630 / ASPEED on AMD), boot_vga 1, runs the framebuffer console.</summary>
    public const string OnboardVga = "0000:00:02.0";
    public const string Usb = "0000:00:14.0";
    public const string SriovRootPort = "0000:00:1b.0";
    /// <summary>X710 PF (8086:1572, i40e) with 4 VFs enabled (8086:154c, iavf) at 0000:03:02.0-3.</summary>
    public const string SriovPf = "0000:03:00.0";
    /// <summary>Second X710 PF, sriov_numvfs 0 (its VFs would start at 0000:03:0a.0).</summary>
    public const string SriovPf2 = "0000:03:00.1";
    public const string SriovVf0 = "0000:03:02.0";
    public const string SriovVf1 = "0000:03:02.1";
    public const string SriovVf2 = "0000:03:02.2";
    public const string SriovVf3 = "0000:03:02.3";
    /// <summary>82574L (8086:10d3, e1000e) carrying the default route (enp4s0).</summary>
    public const string HostNic = "0000:04:00.0";
    /// <summary>A second 82574L (e1000e, enp5s0), free for passthrough.</summary>
    public const string FreeNic = "0000:05:00.0";
    /// <summary>PCIe-to-PCI bridge (1b21:1080, no driver); its group also holds <see cref="LegacyAudio"/> and <see cref="LegacyNic"/>.</summary>
    public const string PciBridge = "0000:06:00.0";
    public const string LegacyAudio = "0000:07:00.0";
    public const string LegacyNic = "0000:07:01.0";
    /// <summary>RTS522A card reader with no driver bound (rtsx_pci is available but not loaded).</summary>
    public const string UnboundDevice = "0000:08:00.0";
    /// <summary>NVMe (nvme0) holding the root filesystem (nvme0n1p2 = 259:2 in mountinfo).</summary>
    public const string Nvme = "0000:09:00.0";
    public const string Lpc = "0000:00:1f.0";
    public const string Smbus = "0000:00:1f.4";

    public static IReadOnlyList<string> SriovVfs => [SriovVf0, SriovVf1, SriovVf2, SriovVf3];
}

/// <summary>Ready-made simulated hosts. Each writes its tree into <c>root</c> (an empty or missing directory).</summary>
public static class SimulatedHosts
{
    private const long KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

    /// <summary>A new empty directory for a simulated host: on tmpfs (/dev/shm) when available — building on a journaling
    /// disk is about ten times slower — else under the system temp directory. The caller deletes it.</summary>
    public static string CreateTempRoot()
    {
        const string tmpfs = "/dev/shm";
        try
        {
            if (Directory.Exists(tmpfs)) return Directory.CreateDirectory(Path.Combine(tmpfs, "gallium-sim-" + Guid.NewGuid().ToString("N")[..12])).FullName;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }  // not writable: fall back to the disk
        return Directory.CreateTempSubdirectory("gallium-sim-").FullName;
    }

    /// <summary>An Intel workstation/server with the IOMMU on and vfio-pci loaded; see <see cref="StandardHost"/> for its functions.</summary>
    public static SimulatedKernel Standard(string root) => Standard(root, new HostOptions());

    public static SimulatedKernel Standard(string root, HostOptions options) => StandardTopology(options).Build(root);

    /// <summary>DMAR present, intel_iommu=off: no groups, no class/iommu entries.</summary>
    public static SimulatedKernel IommuOff(string root) => Standard(root, new HostOptions { KernelIommu = false });

    /// <summary>The firmware has VT-d off: no DMAR table, no groups.</summary>
    public static SimulatedKernel FirmwareOff(string root) => Standard(root, new HostOptions { FirmwareIommu = false });

    /// <summary>The AMD variant: AuthenticAMD with svm, IVRS, ivhd0, same addresses.</summary>
    public static SimulatedKernel Amd(string root) => Standard(root, new HostOptions { Cpu = "amd" });

    /// <summary>The standard host as a topology, to extend before <see cref="HostTopology.Build"/>.</summary>
    public static HostTopology StandardTopology(HostOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        bool amd = options.Cpu.Trim().Equals("amd", StringComparison.OrdinalIgnoreCase) || options.Cpu.Trim().Equals("AuthenticAMD", StringComparison.OrdinalIgnoreCase);
        var t = HostTopology.Create().Cpu(options.Cpu).Iommu(options.FirmwareIommu, options.KernelIommu).VfioPciLoaded(options.VfioPciLoaded);
        if (options.IommuPassthrough) t.ExtraCommandLine("iommu=pt").IommuDefaultDomain("identity");
        if (options.VfioPciLoadFailure is not null) t.ModuleLoadFails("vfio-pci", options.VfioPciLoadFailure);
        if (!options.VfioPciAvailable) t.ModuleUnavailable("vfio-pci");

        int rp(int intel) => amd ? 0x1483 : intel;
        if (amd)
        {
            t.RootComplex(StandardHost.HostBridge, 0x1022, 0x1480, 0x060000, null);
            t.RootComplex(StandardHost.AmdIommu, 0x1022, 0x1481, 0x080600, null).NoIommuGroup();
        }
        else t.RootComplex(StandardHost.HostBridge, 0x8086, 0x3e30, 0x060000, null);

        t.RootPort(StandardHost.GpuRootPort, 0x01, amd ? 0x1022 : 0x8086, rp(0x1901));
        t.Endpoint(StandardHost.Gpu, 0x10de, 0x2684, 0x030000, "nvidia").Subsystem(0x1043, 0x889c).Revision(0xa1)
            .Mem32Bar(0, 16 * MiB).Mem64Bar(1, 32 * GiB).Mem64Bar(3, 32 * MiB).IoBar(5, 128).Rom(512 * KiB)
            .BootVga(false).ResetMethods("bus");
        t.Endpoint(StandardHost.GpuAudio, 0x10de, 0x22ba, 0x040300, "snd_hda_intel").Subsystem(0x1043, 0x889c).Revision(0xa1)
            .Mem32Bar(0, 16 * KiB).ResetMethods("bus");

        t.RootPort(StandardHost.ComputeGpuRootPort, 0x02, amd ? 0x1022 : 0x8086, rp(0x1905));
        t.Endpoint(StandardHost.ComputeGpu, 0x10de, 0x2330, 0x030200, "nvidia").Subsystem(0x10de, 0x16c1).Revision(0xa1)
            .Mem32Bar(0, 16 * MiB).Mem64Bar(1, 128 * GiB).Mem64Bar(3, 32 * MiB);

        if (amd)
            t.RootComplex(StandardHost.OnboardVga, 0x1a03, 0x2000, 0x030000, "ast").Subsystem(0x15d9, 0x1b95).Revision(0x41)
                .Mem32Bar(0, 64 * MiB).Mem32Bar(1, 256 * KiB).IoBar(2, 128).BootVga(true).Framebuffer().ResetMethods("");
        else
            t.RootComplex(StandardHost.OnboardVga, 0x8086, 0x3e92, 0x030000, "i915").Subsystem(0x1462, 0x7c02)
                .Mem64Bar(0, 16 * MiB, prefetchable: false).Mem64Bar(2, 256 * MiB).IoBar(4, 64).BootVga(true).Framebuffer().ResetMethods("flr");

        t.RootComplex(StandardHost.Usb, amd ? 0x1022 : 0x8086, amd ? 0x149c : 0xa36d, 0x0c0330, "xhci_hcd")
            .Mem64Bar(0, 64 * KiB, prefetchable: false).ResetMethods("");

        t.RootPort(StandardHost.SriovRootPort, 0x03, amd ? 0x1022 : 0x8086, rp(0xa340));
        t.Endpoint(StandardHost.SriovPf, 0x8086, 0x1572, 0x020000, "i40e").Subsystem(0x8086, 0x0001).Revision(0x02).Acs(true)
            .Mem64Bar(0, 8 * MiB).Mem64Bar(3, 32 * KiB).Rom(512 * KiB)
            .Sriov(totalVfs: 64, vfDeviceId: 0x154c, vfDriver: "iavf", numVfs: 4, vfOffset: 0x10).NetInterface("enp3s0f0");
        t.Endpoint(StandardHost.SriovPf2, 0x8086, 0x1572, 0x020000, "i40e").Subsystem(0x8086, 0x0001).Revision(0x02).Acs(true)
            .Mem64Bar(0, 8 * MiB).Mem64Bar(3, 32 * KiB).Rom(512 * KiB)
            .Sriov(totalVfs: 64, vfDeviceId: 0x154c, vfDriver: "iavf", numVfs: 0, vfOffset: 0x4f).NetInterface("enp3s0f1");

        t.RootPort("0000:00:1c.0", 0x04, amd ? 0x1022 : 0x8086, rp(0xa338));
        t.Endpoint(StandardHost.HostNic, 0x8086, 0x10d3, 0x020000, "e1000e").Subsystem(0x8086, 0xa01f)
            .Mem32Bar(0, 128 * KiB).Mem32Bar(1, 512 * KiB).IoBar(2, 32).Mem32Bar(3, 16 * KiB).ResetMethods("pm bus")
            .NetInterface("enp4s0", defaultRoute: true);
        t.RootPort("0000:00:1c.1", 0x05, amd ? 0x1022 : 0x8086, rp(0xa339));
        t.Endpoint(StandardHost.FreeNic, 0x8086, 0x10d3, 0x020000, "e1000e").Subsystem(0x8086, 0xa01f)
            .Mem32Bar(0, 128 * KiB).Mem32Bar(1, 512 * KiB).IoBar(2, 32).Mem32Bar(3, 16 * KiB).ResetMethods("pm bus")
            .NetInterface("enp5s0");

        t.RootPort("0000:00:1c.2", 0x06, amd ? 0x1022 : 0x8086, rp(0xa33a));
        t.PciBridge(StandardHost.PciBridge, 0x07);
        t.Endpoint(StandardHost.LegacyAudio, 0x1102, 0x0002, 0x040100, "snd_emu10k1").Subsystem(0x1102, 0x8064).Revision(0x07)
            .IoBar(0, 32).ResetMethods("");
        t.Endpoint(StandardHost.LegacyNic, 0x10ec, 0x8139, 0x020000, "8139too").Subsystem(0x10ec, 0x8139).Revision(0x10)
            .IoBar(0, 256).Mem32Bar(1, 256).ResetMethods("");

        t.RootPort("0000:00:1c.3", 0x08, amd ? 0x1022 : 0x8086, rp(0xa33b));
        t.Endpoint(StandardHost.UnboundDevice, 0x10ec, 0x522a, 0xff0000, null).Subsystem(0x1028, 0x0869).Revision(0x01)
            .Mem32Bar(0, 4 * KiB).ResetMethods("pm");

        t.RootPort("0000:00:1d.0", 0x09, amd ? 0x1022 : 0x8086, rp(0xa330));
        t.Endpoint(StandardHost.Nvme, 0x144d, 0xa808, 0x010802, "nvme").Subsystem(0x144d, 0xa801)
            .Mem64Bar(0, 16 * KiB, prefetchable: false).Nvme("nvme0", rootFilesystem: true);

        t.RootComplex(StandardHost.Lpc, amd ? 0x1022 : 0x8086, amd ? 0x790e : 0xa305, 0x060100, null).Revision(0x10);
        t.RootComplex(StandardHost.Smbus, amd ? 0x1022 : 0x8086, amd ? 0x790b : 0xa323, 0x0c0500, amd ? "piix4_smbus" : "i801_smbus")
            .Revision(0x10).Mem64Bar(0, 256, prefetchable: false).IoBar(4, 32).ResetMethods("");
        t.ShareGroup(StandardHost.HostBridge, StandardHost.Lpc, StandardHost.Smbus);
        foreach (var bdf in options.VfioDevices ?? []) t.OnVfio(bdf);
        return t;
    }

    /// <summary>A two-socket Intel GPU server (see <see cref="GpuServerHost"/>), every device on its host driver. The preset of
    /// New-GalliumSimulatedHost (<see cref="SimulatedHost"/>) then enables two of its GPUs and gives one to a VM.</summary>
    public static SimulatedKernel GpuServer(string root) => GpuServerTopology().Build(root);

    /// <summary>The GPU server as a topology, to extend before <see cref="HostTopology.Build"/>.</summary>
    public static HostTopology GpuServerTopology()
    {
        var t = HostTopology.Create().Cpu("intel");
        t.RootComplex(GpuServerHost.HostBridge, 0x8086, 0x09a2, 0x060000, null);

        // The BMC's VGA behind the BMC's own PCIe-to-PCI bridge: the boot console.
        t.RootPort("0000:00:01.0", 0x02, 0x8086, 0x352a);
        t.PciBridge(GpuServerHost.BmcBridge, 0x03, 0x1a03, 0x1150);
        t.Endpoint(GpuServerHost.BmcVga, 0x1a03, 0x2000, 0x030000, "ast").Subsystem(0x15d9, 0x1c48).Revision(0x52)
            .Mem32Bar(0, 64 * MiB).Mem32Bar(1, 256 * KiB).IoBar(2, 128).BootVga(true).Framebuffer().ResetMethods("");

        t.RootPort("0000:00:02.0", 0x04, 0x8086, 0x352b);
        t.Endpoint(GpuServerHost.HostNic, 0x8086, 0x1572, 0x020000, "i40e").Subsystem(0x8086, 0x0007).Revision(0x02)
            .Mem64Bar(0, 8 * MiB).Mem64Bar(3, 32 * KiB).NetInterface("eno1", defaultRoute: true);

        void Gpu(string port, int bus, string address, int node) =>
            t.RootPort(port, bus, 0x8086, 0x352c).NumaNode(node)
             .Endpoint(address, 0x10de, 0x2331, 0x030200, "nvidia").Subsystem(0x10de, 0x1626).Revision(0xa1)
             .Mem32Bar(0, 16 * MiB).Mem64Bar(1, 128 * GiB).Mem64Bar(3, 32 * MiB).NumaNode(node).ResetMethods("flr bus");
        void Nic(string port, int bus, string address, int node, string name) =>
            t.RootPort(port, bus, 0x8086, 0x352d).NumaNode(node)
             .Endpoint(address, 0x15b3, 0x101b, 0x020000, "mlx5_core").Subsystem(0x15b3, 0x0007)
             .Mem64Bar(0, 32 * MiB).NumaNode(node).ResetMethods("flr bus")
             .Sriov(totalVfs: 16, vfDeviceId: 0x101c, vfDriver: "mlx5_core", numVfs: 0, vfOffset: 1).NetInterface(name);

        Gpu("0000:00:03.0", 0x17, GpuServerHost.Gpu0, 0);
        Nic("0000:00:04.0", 0x18, GpuServerHost.Nic0, 0, "ens18f0np0");
        Gpu("0000:00:05.0", 0x31, GpuServerHost.Gpu1, 0);
        Gpu("0000:00:06.0", 0xb1, GpuServerHost.Gpu2, 1);
        Nic("0000:00:07.0", 0xb2, GpuServerHost.Nic1, 1, "ens178f0np0");
        Gpu("0000:00:08.0", 0xca, GpuServerHost.Gpu3, 1);

        t.RootPort("0000:00:09.0", 0xe3, 0x8086, 0x352e).NumaNode(1);
        t.Endpoint(GpuServerHost.Nvme, 0x144d, 0xa824, 0x010802, "nvme").Subsystem(0x144d, 0xa812)
            .Mem64Bar(0, 32 * KiB, prefetchable: false).NumaNode(1).Nvme("nvme0", rootFilesystem: true);

        t.RootComplex(GpuServerHost.Lpc, 0x8086, 0x1b81, 0x060100, null).Revision(0x11);
        t.RootComplex(GpuServerHost.Smbus, 0x8086, 0xa323, 0x0c0500, "i801_smbus").Revision(0x11)
            .Mem64Bar(0, 256, prefetchable: false).IoBar(4, 32).ResetMethods("");
        t.ShareGroup(GpuServerHost.HostBridge, GpuServerHost.Lpc, GpuServerHost.Smbus);
        return t;
    }

    /// <summary>A host with exactly <paramref name="functions"/> PCI functions (1 to 63492) for benchmarks: per PCI segment
    /// (domain) a host bridge, then up to 248 root ports each holding a ConnectX-6 PF (15b3:101b, mlx5_core) with up to 62
    /// VFs; every fourth VF is on vfio-pci. A segment holds at most 15873 functions (256 buses); larger hosts continue in
    /// segments 0001, 0002, ..., as multi-segment servers do.</summary>
    public static SimulatedKernel Large(string root, int functions)
    {
        const int perPort = 64, portsPerSegment = 31 * 8, segments = 4, perSegment = 1 + portsPerSegment * perPort;
        if (functions < 1 || functions > segments * perSegment)
            throw new ArgumentOutOfRangeException(nameof(functions), $"1 to {segments * perSegment} functions.");
        var t = HostTopology.Create();
        int remaining = functions;
        for (int segment = 0; remaining > 0; segment++)
        {
            t.RootComplex($"{segment:x4}:00:00.0", 0x8086, 0x3e30, 0x060000, null);
            remaining--;
            for (int port = 0; port < portsPerSegment && remaining > 0; port++)
            {
                string slot = $"{segment:x4}:00:{1 + port / 8:x2}.{port % 8}";
                int bus = port + 1;
                if (remaining == 1)
                {
                    t.RootComplex(slot, 0x8086, 0xa323, 0x0c0500, "i801_smbus").Mem64Bar(0, 256, prefetchable: false);
                    remaining = 0;
                    break;
                }
                int vfs = Math.Min(perPort - 2, remaining - 2);
                t.RootPort(slot, bus, 0x8086, 0xa338);
                t.Endpoint($"{segment:x4}:{bus:x2}:00.0", 0x15b3, 0x101b, 0x020000, "mlx5_core").Subsystem(0x15b3, 0x0007)
                    .Mem64Bar(0, 32 * MiB).Sriov(totalVfs: 63, vfDeviceId: 0x101c, vfDriver: "mlx5_core", numVfs: vfs, vfOffset: 1);
                remaining -= 2 + vfs;
            }
        }
        var kernel = t.Build(root);
        var timeout = TimeSpan.FromSeconds(1);
        int n = 0;
        foreach (var vf in kernel.DeviceAddresses.Where(a => kernel.PhysicalFunctionOf(a) is not null))
        {
            if (n++ % 4 != 3) continue;
            kernel.Write($"bus/pci/devices/{vf}/driver_override", "vfio-pci", timeout);
            kernel.Write($"bus/pci/devices/{vf}/driver/unbind", vf, timeout);
            kernel.Write("bus/pci/drivers_probe", vf, timeout);
        }
        kernel.ResetCounters();
        return kernel;
    }
}
