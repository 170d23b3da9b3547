namespace Gallium.Pci;

/// <summary>One base address register as the kernel reports it in the device's <c>resource</c> file (REFERENCE §3.4).</summary>
/// <param name="Index">BAR number 0-5 (6 is the expansion ROM and is not listed as a BAR).</param>
/// <param name="Start">CPU address of the BAR; 0 when the kernel could not assign it.</param>
/// <param name="Size">Length in bytes.</param>
/// <param name="IsAssigned">False when the kernel left it unassigned (start 0 or IORESOURCE_UNSET).</param>
public sealed record PciBar(int Index, ulong Start, ulong Size, bool Is64Bit, bool IsPrefetchable, bool IsIo, bool IsAssigned)
{
    /// <summary>A 64-bit prefetchable memory BAR: what needs the guest's 64-bit MMIO window (REFERENCE §3.4, §6.4).</summary>
    public bool Is64BitPrefetchable => Is64Bit && IsPrefetchable && !IsIo;

    public override string ToString() =>
        $"BAR{Index} {(IsIo ? "I/O" : Is64Bit ? "64-bit" : "32-bit")}{(IsPrefetchable ? " pref" : "")} {SizeText.Format(Size)}";
}

/// <summary>Human sizes as lspci prints them (K, M, G, T with binary multiples).</summary>
public static class SizeText
{
    public static string Format(ulong bytes)
    {
        string[] units = ["", "K", "M", "G", "T", "P"];
        int u = 0;
        ulong v = bytes;
        while (u < units.Length - 1 && v >= 1024 && v % 1024 == 0) { v /= 1024; u++; }
        return u == 0 ? $"{v}" : $"{v}{units[u]}";
    }

    /// <summary>The size in the largest unit it reaches, with at most one decimal: 128 GiB + 32 MiB reads "128G".</summary>
    public static string Approximate(ulong bytes)
    {
        string[] units = ["", "K", "M", "G", "T", "P"];
        double v = bytes;
        int u = 0;
        while (u < units.Length - 1 && v >= 1024) { v /= 1024; u++; }
        string number = v.ToString(v >= 100 ? "0" : "0.#", System.Globalization.CultureInfo.InvariantCulture);
        return number + units[u];
    }
}
