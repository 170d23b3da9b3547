namespace Gallium.Pci.Testing;

/// <summary>Addresses of the functions of <see cref="SimulatedHosts.GpuServer(string)"/>: a two-socket Intel GPU server with
/// four H100s, two ConnectX-6 NICs, a BMC with its own VGA, one host NIC and an NVMe boot disk. Each GPU and NIC sits alone
/// behind its own root port (its own IOMMU group); devices on socket 1 report NUMA node 1.</summary>
public static class GpuServerHost
{
    public const string HostBridge = "0000:00:00.0";
    /// <summary>ASPEED AST2600 behind its PCIe-to-PCI bridge (1a03:1150): boot VGA, runs the framebuffer console.</summary>
    public const string BmcBridge = "0000:02:00.0";
    public const string BmcVga = "0000:03:00.0";
    /// <summary>Intel X710 (i40e, eno1) carrying the default route.</summary>
    public const string HostNic = "0000:04:00.0";
    /// <summary>H100 PCIe (10de:2331, class 030200, nvidia), 128 GiB BAR1, NUMA node 0: on the host driver.</summary>
    public const string Gpu0 = "0000:17:00.0";
    /// <summary>ConnectX-6 (15b3:101b, mlx5_core), NUMA node 0, SR-IOV capable (no VFs enabled).</summary>
    public const string Nic0 = "0000:18:00.0";
    /// <summary>Second H100, NUMA node 0: on the host driver.</summary>
    public const string Gpu1 = "0000:31:00.0";
    /// <summary>Third H100, NUMA node 1: enabled for passthrough (vfio-pci, persisted) and free.</summary>
    public const string Gpu2 = "0000:b1:00.0";
    /// <summary>Second ConnectX-6, NUMA node 1.</summary>
    public const string Nic1 = "0000:b2:00.0";
    /// <summary>Fourth H100, NUMA node 1: enabled and held by the VM train-01 (without the large-BAR fix).</summary>
    public const string Gpu3 = "0000:ca:00.0";
    /// <summary>Samsung PM9A3 NVMe (nvme0) holding the root filesystem.</summary>
    public const string Nvme = "0000:e3:00.0";
    public const string Lpc = "0000:00:1f.0";
    public const string Smbus = "0000:00:1f.4";

    /// <summary>The VM that holds <see cref="Gpu3"/> (stopped, UEFI, 64 GiB).</summary>
    public const string TrainingVm = "train-01";
    /// <summary>A second stopped UEFI VM with no devices.</summary>
    public const string SpareVm = "train-02";

    public static IReadOnlyList<string> Gpus => [Gpu0, Gpu1, Gpu2, Gpu3];
}
