namespace Gallium.Pci.Mmio;

/// <summary>One BAR that must live in the guest's 64-bit window, with the device it belongs to.</summary>
public sealed record MmioBarDemand(PciAddress Device, PciBar Bar)
{
    public override string ToString() => $"{Device} BAR{Bar.Index} {MmioBytes.Format(Bar.Size)}";
}

/// <summary>How much 64-bit prefetchable space a set of devices needs in a window of a given size (REFERENCE §6.4).</summary>
public static class MmioSizing
{
    const ulong MiB = 1UL << 20;
    const ulong GiB = 1UL << 30;

    /// <summary>PCI-to-PCI bridge memory windows have 1 MiB granularity.</summary>
    public const ulong BridgeWindowGranularity = MiB;
    /// <summary>Room for the emulated devices' own small 64-bit prefetchable BARs (virtio: 16 KiB each) in the same window.</summary>
    public const ulong EmulatedDeviceAllowance = 16 * MiB;
    /// <summary>The smallest aperture we ask OVMF for (it aligns to 1 GiB anyway).</summary>
    public const ulong MinimumAperture = GiB;

    /// <summary>The BARs that need the 64-bit window: 64-bit prefetchable memory BARs with a size (REFERENCE §3.4, §6.4).</summary>
    public static IReadOnlyList<MmioBarDemand> Demands(IEnumerable<PciDevice> devices) =>
        devices.SelectMany(d => d.Bars.Where(b => b.Is64BitPrefetchable && b.Size > 0).Select(b => new MmioBarDemand(d.Address, b)))
            .OrderByDescending(x => x.Bar.Size).ThenBy(x => x.Device).ThenBy(x => x.Bar.Index)
            .ToList();

    /// <summary>OVMF's hot-plug padding for one root port: aperture/256 rounded up to a power of two when the aperture is
    /// over 32 GiB, else none ([E] OvmfPkg/PciHotPlugInitDxe/PciHotPlugInit.c, REFERENCE §6.4 step 3).</summary>
    public static ulong HotplugPadding(ulong apertureBytes) =>
        apertureBytes > 32 * GiB ? PowerOfTwoCeiling(apertureBytes / 256) : 0;

    /// <summary>Bytes needed when the window is <paramref name="apertureBytes"/> long: each device behind its own root port
    /// (bridge window = its BARs, at least the padding, aligned to its largest BAR), each spare hot-plug root port padded,
    /// plus <see cref="EmulatedDeviceAllowance"/>; packed largest alignment first (REFERENCE §6.4 step 2).</summary>
    public static ulong Required(IReadOnlyList<MmioBarDemand> demands, int spareRootPorts, ulong apertureBytes)
    {
        if (demands.Count == 0) return 0;
        ulong padding = HotplugPadding(apertureBytes);
        var windows = new List<(ulong Size, ulong Align)>();
        foreach (var device in demands.GroupBy(d => d.Device))
        {
            var sizes = device.Select(d => PowerOfTwoCeiling(d.Bar.Size)).OrderByDescending(s => s).ToList();
            ulong cursor = 0;
            foreach (ulong s in sizes) cursor = OvmfFirmware.AlignUp(cursor, s) + s;
            ulong size = Math.Max(OvmfFirmware.AlignUp(cursor, BridgeWindowGranularity), padding);
            ulong align = Math.Max(Math.Max(sizes[0], BridgeWindowGranularity), padding);
            windows.Add((size, align));
        }
        for (int i = 0; i < Math.Max(spareRootPorts, 0); i++)
            if (padding > 0) windows.Add((padding, padding));
        windows.Add((EmulatedDeviceAllowance, BridgeWindowGranularity));

        ulong total = 0;
        foreach (var (size, align) in windows.OrderByDescending(w => w.Align).ThenByDescending(w => w.Size))
            total = checked(OvmfFirmware.AlignUp(total, align) + size);
        return total;
    }

    /// <summary>The smallest power-of-two aperture (≥ 1 GiB) that holds everything, counting the padding that aperture itself
    /// causes (REFERENCE §6.4 step 4). 0 when no BAR needs the 64-bit window.</summary>
    public static ulong Aperture(IReadOnlyList<MmioBarDemand> demands, int spareRootPorts)
    {
        if (demands.Count == 0) return 0;
        ulong aperture = MinimumAperture;
        while (Required(demands, spareRootPorts, aperture) > aperture)
        {
            if (aperture >= 1UL << 62) throw new OverflowException("The BARs need more than 2^62 bytes.");
            aperture <<= 1;
        }
        return aperture;
    }

    public static ulong PowerOfTwoCeiling(ulong value)
    {
        if (value <= 1) return 1;
        int shift = 64 - System.Numerics.BitOperations.LeadingZeroCount(value - 1);
        return shift >= 64 ? throw new OverflowException($"{value} has no 64-bit power of two above it.") : 1UL << shift;
    }
}
