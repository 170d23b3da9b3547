using Gallium.Pci.Testing;

namespace Gallium.Pci.Bench;

/// <summary>Simulated hosts the bench needs beyond <see cref="SimulatedHosts"/>.</summary>
public static class BenchHosts
{
    /// <summary>The first function behind the bridge: the address Enable and Disable are given.</summary>
    public const string GroupTarget = "0000:02:00.0";

    /// <summary>A 16-function IOMMU group: a PCIe-to-PCI bridge (no driver, stays) with 15 conventional functions behind it,
    /// sound cards (snd_emu10k1) and NICs (8139too) in turn, as legacy cards behind one bridge share a group (REFERENCE §3.5).</summary>
    public static SimulatedKernel SixteenFunctionGroup(string root)
    {
        var t = HostTopology.Create()
            .RootComplex("0000:00:00.0", 0x8086, 0x3e30, 0x060000, null)
            .RootPort("0000:00:1c.0", 1)
            .PciBridge("0000:01:00.0", 2);
        for (int slot = 0; slot < 15; slot++)
        {
            string bdf = $"0000:02:{slot:x2}.0";
            if (slot % 2 == 0) t.Endpoint(bdf, 0x1102, 0x0002, 0x040100, "snd_emu10k1").IoBar(0, 32).ResetMethods("");
            else t.Endpoint(bdf, 0x10ec, 0x8139, 0x020000, "8139too").IoBar(0, 256).Mem32Bar(1, 256).ResetMethods("");
        }
        return t.Build(root);
    }
}
