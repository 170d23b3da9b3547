namespace Gallium.Pci.Mmio;

/// <summary>How OVMF chose the window.</summary>
public enum MmioWindowKind
{
    /// <summary>Above RAM, sized by <c>PcdPciMmio64Size</c> (32 GiB) or <c>X-PciMmio64Mb</c>.</summary>
    Classic,
    /// <summary>The top eighth of a trusted guest address space, <c>2^(bits-3)</c> (REFERENCE §6.1).</summary>
    Dynamic,
}

/// <summary>The 64-bit PCI MMIO window OVMF gives a guest, and how much of it the guest can really use.</summary>
/// <param name="Base">First address of the window.</param>
/// <param name="Size">Window length.</param>
/// <param name="UsableBytes">Bytes from <paramref name="Base"/> that the guest can place BARs in: cut by the guest's and
/// the host's address width and, for AMD guests, the HyperTransport hole.</param>
/// <param name="Limit">Why the usable part is shorter than the window (null when it is not).</param>
public sealed record MmioWindow(ulong Base, ulong Size, MmioWindowKind Kind, bool AddressWidthTrusted, ulong UsableBytes, string? Limit)
{
    public ulong End => Base + Size;

    public override string ToString() =>
        $"{Kind.ToString().ToLowerInvariant()} {MmioBytes.Format(Size)} at 0x{Base:x}"
        + (UsableBytes < Size ? $" ({MmioBytes.Format(UsableBytes)} usable: {Limit})" : "");
}

/// <summary>OVMF edk2-stable202211's choice of the 64-bit PCI MMIO window ([E] OvmfPkg/Library/PlatformInitLib/MemDetect.c,
/// REFERENCE §6.1), with QEMU 7.2 q35's RAM layout.</summary>
public static class OvmfFirmware
{
    /// <summary><c>PcdPciMmio64Size</c> for X64 builds: 32 GiB (REFERENCE §6.1).</summary>
    public const ulong DefaultApertureBytes = 32UL << 30;
    /// <summary>The largest <c>X-PciMmio64Mb</c> OVMF accepts: 0x1000000 MiB = 16 TiB.</summary>
    public const ulong MaxApertureMiB = 0x1000000;
    /// <summary>OVMF 2022.11 limits a trusted address width to 47 bits (avoids 5-level paging and bit 48).</summary>
    public const int MaxFirmwareBits = 47;
    /// <summary>QEMU reserves the AMD HyperTransport range <c>[0xFD_0000_0000, 1 TiB)</c> for AMD vCPUs with ≥ 40 bits ([Q] hw/i386/pc.c).</summary>
    public const ulong AmdHyperTransportStart = 0xFD_0000_0000;
    public const ulong AmdHyperTransportEnd = 0x100_0000_0000;

    const ulong GiB = 1UL << 30;

    /// <summary>Whether OVMF believes the CPU's phys-bits: ≥ 41, or Intel 36/39, or AMD 40 (MemDetect.c PlatformAddressWidthFromCpuid).</summary>
    public static bool TrustsAddressWidth(int bits, CpuVendor vendor) =>
        bits >= 41 || (vendor == CpuVendor.Intel && bits is 36 or 39) || (vendor == CpuVendor.Amd && bits == 40);

    /// <summary>The address width OVMF uses when it trusts the CPU: capped at 47, and at 40 without 1 GiB pages.</summary>
    public static int FirmwareAddressBits(GuestCpu cpu)
    {
        int bits = Math.Min(cpu.PhysicalAddressBits, MaxFirmwareBits);
        return !cpu.HasGigabytePages && bits > 40 ? 40 : bits;
    }

    /// <summary>End of guest RAM plus the memory hot-plug area: where OVMF's classic window starts looking (q35, QEMU 7.2).</summary>
    public static ulong FirstNonRamAddress(VmMmioSettings vm)
    {
        // q35 keeps 2 GiB below 4 GiB when RAM >= 2816 MiB, else up to 2816 MiB ([Q] hw/i386/pc_q35.c).
        ulong lowLimit = vm.MemoryBytes >= 0xB000_0000 ? 0x8000_0000 : 0xB000_0000;
        ulong above4G = vm.MemoryBytes > lowLimit ? vm.MemoryBytes - lowLimit : 0;
        ulong end = 4 * GiB + above4G;
        if (vm.MaxMemoryBytes > vm.MemoryBytes)
            // Device-memory region: 1 GiB aligned, one extra GiB per slot ([Q] pc_memory_init, etc/reserved-memory-end).
            end = AlignUp(end, GiB) + (vm.MaxMemoryBytes - vm.MemoryBytes) + (ulong)Math.Max(vm.MemorySlots, 0) * GiB;
        return end;
    }

    /// <summary>The window OVMF opens for this guest CPU and aperture setting (REFERENCE §6.1).</summary>
    /// <param name="apertureMiB">The <c>X-PciMmio64Mb</c> value, or null for the build default.</param>
    public static MmioWindow Window(VmMmioSettings vm, GuestCpu cpu, HostCpu host, ulong? apertureMiB)
    {
        ulong classicSize = apertureMiB is ulong mib and > 0 and <= MaxApertureMiB ? mib << 20 : DefaultApertureBytes;
        classicSize = AlignUp(classicSize, GiB);
        ulong classicBase = AlignUp(AlignUp(FirstNonRamAddress(vm), GiB), PowerOfTwoFloor(classicSize));

        bool trusted = TrustsAddressWidth(cpu.PhysicalAddressBits, cpu.Vendor);
        ulong windowBase = classicBase, windowSize = classicSize;
        var kind = MmioWindowKind.Classic;
        ulong? firmwareLimit = null;
        if (trusted)
        {
            int bits = FirmwareAddressBits(cpu);
            ulong space = 1UL << bits;
            ulong dynamic = 1UL << (bits - 3);
            firmwareLimit = space;
            // PlatformDynamicMmioWindow: only when bigger than the configured size and it fits above the classic base.
            if (classicSize < dynamic && classicBase + dynamic < space)
                (windowBase, windowSize, kind) = (space - dynamic, dynamic, MmioWindowKind.Dynamic);
        }

        ulong usableEnd = windowBase + windowSize;
        string? limit = null;
        void Cut(ulong end, string why)
        {
            if (end < usableEnd) (usableEnd, limit) = (end, why);
        }
        if (firmwareLimit is ulong fl) Cut(fl, $"OVMF maps only {FirmwareAddressBits(cpu)} address bits");
        Cut(Pow2(cpu.PhysicalAddressBits), $"the guest CPU has {cpu.PhysicalAddressBits} physical address bits");
        if (vm.Accelerator == VmAccelerator.Kvm)
            Cut(Pow2(host.PhysicalAddressBits), $"the host CPU has {host.PhysicalAddressBits} physical address bits");
        if (cpu.Vendor == CpuVendor.Amd && cpu.PhysicalAddressBits >= 40
            && windowBase < AmdHyperTransportEnd && usableEnd > AmdHyperTransportStart)
            Cut(Math.Max(windowBase, AmdHyperTransportStart), "the AMD HyperTransport hole at 0xfd00000000 is reserved");
        ulong usable = usableEnd > windowBase ? usableEnd - windowBase : 0;
        return new MmioWindow(windowBase, windowSize, kind, trusted, usable, limit);
    }

    static ulong Pow2(int bits) => bits >= 64 ? ulong.MaxValue : 1UL << bits;

    internal static ulong AlignUp(ulong value, ulong alignment) =>
        alignment == 0 ? value : (value + alignment - 1) / alignment * alignment;

    internal static ulong PowerOfTwoFloor(ulong value) => value == 0 ? 0 : 1UL << (63 - System.Numerics.BitOperations.LeadingZeroCount(value));
}

/// <summary>Byte counts as the plan prints them: binary units, exact (256 GiB, 32 MiB, 1.5 GiB).</summary>
public static class MmioBytes
{
    public static string Format(ulong bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        double v = bytes;
        int u = 0;
        while (u < units.Length - 1 && v >= 1024) { v /= 1024; u++; }
        return v == Math.Floor(v)
            ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{v:0} {units[u]}")
            : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{v:0.##} {units[u]}");
    }
}
