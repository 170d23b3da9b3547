using System.Globalization;

namespace Gallium.Pci.Host;

/// <summary>Pure parsers for the text of PCI sysfs attributes, in the kernel's exact formats (REFERENCE §3.2–§3.4).
/// Every parser takes the raw file text (null when the file is missing) and returns null or empty on anything it does
/// not recognise, so a vanished or odd attribute never becomes an exception.</summary>
public static class SysfsFormat
{
    // IORESOURCE_* flag bits (REFERENCE §3.4, [K] include/linux/ioport.h).
    public const ulong IoResourceIo = 0x00000100;
    public const ulong IoResourceMem = 0x00000200;
    public const ulong IoResourcePrefetch = 0x00002000;
    public const ulong IoResourceMem64 = 0x00100000;
    public const ulong IoResourceUnset = 0x20000000;

    /// <summary>Resource lines 0–5 are BAR0–5; 6 is the ROM, then SR-IOV and bridge windows (REFERENCE §3.4).</summary>
    public const int BarCount = 6;

    /// <summary>A hex attribute such as <c>0x8086\n</c>; the <c>0x</c> prefix is optional, surrounding white space is ignored.
    /// Null when the text is missing, empty, not hex, or wider than <paramref name="maxValue"/>.</summary>
    public static ulong? ParseHex(string? text, ulong maxValue = ulong.MaxValue) =>
        text is not null && ParseHexSpan(text.AsSpan().Trim()) is { } v && v <= maxValue ? v : null;

    /// <summary><c>vendor</c>, <c>device</c>, <c>subsystem_vendor</c>, <c>subsystem_device</c>: <c>"0x%04x\n"</c>.</summary>
    public static ushort? ParseId(string? text) => ParseHex(text, ushort.MaxValue) is { } v ? (ushort)v : null;

    /// <summary><c>revision</c>: <c>"0x%02x\n"</c>.</summary>
    public static byte? ParseRevision(string? text) => ParseHex(text, byte.MaxValue) is { } v ? (byte)v : null;

    /// <summary><c>class</c>: <c>"0x%06x\n"</c> = base (23:16), subclass (15:8), programming interface (7:0).</summary>
    public static uint? ParseClass(string? text) => ParseHex(text, 0xFFFFFF) is { } v ? (uint)v : null;

    public static byte BaseClass(uint classCode) => (byte)(classCode >> 16);
    public static byte SubClass(uint classCode) => (byte)(classCode >> 8);
    public static byte ProgIf(uint classCode) => (byte)classCode;

    /// <summary>PCI-to-PCI (0x0604), CardBus (0x0607) and semi-transparent PCI-to-PCI (0x0609) bridges: the classes of
    /// header types 1 and 2, which vfio-pci refuses (REFERENCE §4.5).</summary>
    public static bool IsBridgeClass(uint classCode) => (classCode >> 8) is 0x0604 or 0x0607 or 0x0609;

    /// <summary><c>driver_override</c>: the kernel prints <c>(null)</c> when unset; newer kernels may print nothing (REFERENCE §3.3).</summary>
    public static string? ParseDriverOverride(string? text)
    {
        if (text is null) return null;
        string s = text.Trim();
        return s.Length == 0 || s == "(null)" ? null : s;
    }

    /// <summary>A decimal attribute (<c>"%d\n"</c>, <c>"%u\n"</c>): null when missing or not a number.</summary>
    public static int? ParseDecimal(string? text)
    {
        if (text is null) return null;
        return int.TryParse(text.AsSpan().Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int v) ? v : null;
    }

    /// <summary><c>numa_node</c>: <c>"%d\n"</c>; -1 means the kernel does not know (REFERENCE §3.2).</summary>
    public static int? ParseNumaNode(string? text) => ParseDecimal(text) is { } n && n >= 0 ? n : null;

    /// <summary><c>sriov_totalvfs</c>: <c>"%u\n"</c>; the file exists only on SR-IOV capable functions.</summary>
    public static int? ParseSriovTotalVfs(string? text) => ParseDecimal(text) is { } n && n >= 0 ? n : null;

    /// <summary><c>boot_vga</c>: <c>"%u\n"</c>, 1 for the firmware's boot display device (REFERENCE §3.2).</summary>
    public static bool ParseBootVga(string? text) => ParseDecimal(text) is 1;

    /// <summary><c>reset_method</c>: the enabled methods, space-separated, in the order the kernel tries them.</summary>
    public static IReadOnlyList<string> ParseResetMethods(string? text) =>
        text is null ? [] : text.Split([' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries);

    /// <summary>The BARs (0–5) in a <c>resource</c> file: one <c>"0x%016llx 0x%016llx 0x%016llx\n"</c> line (start, inclusive
    /// end, flags) per resource. The line count depends on kernel config and device kind (7, 13, 17), so it is never assumed.
    /// A line with flags 0 is an unimplemented BAR or the upper half of a 64-bit BAR; both are left out (REFERENCE §3.4).</summary>
    public static IReadOnlyList<PciBar> ParseResource(string? text)
    {
        if (string.IsNullOrEmpty(text)) return [];
        var bars = new List<PciBar>(BarCount);
        int index = 0;
        bool upperHalf = false;
        var rest = text.AsSpan();
        while (rest.Length > 0 && index < BarCount)
        {
            int nl = rest.IndexOf('\n');
            var line = nl < 0 ? rest : rest[..nl];
            rest = nl < 0 ? default : rest[(nl + 1)..];
            int bar = index++;
            if (upperHalf) { upperHalf = false; continue; }  // the second register of a 64-bit BAR pair
            if (!TryParseResourceLine(line, out ulong start, out ulong end, out ulong flags) || flags == 0) continue;
            bool io = (flags & IoResourceIo) != 0;
            bool is64 = !io && (flags & IoResourceMem64) != 0;
            // An unplaced BAR keeps its size as end with start 0 and IORESOURCE_UNSET; an all-zero range has no known size.
            ulong size = end >= start && !(start == 0 && end == 0) ? end - start + 1 : 0;
            bool assigned = start != 0 && (flags & IoResourceUnset) == 0;
            bars.Add(new PciBar(bar, assigned ? start : 0, size, is64, !io && (flags & IoResourcePrefetch) != 0, io, assigned));
            upperHalf = is64;
        }
        return bars;
    }

    /// <summary>One line of <c>resource</c>: three hex numbers separated by white space.</summary>
    public static bool TryParseResourceLine(ReadOnlySpan<char> line, out ulong start, out ulong end, out ulong flags)
    {
        start = end = flags = 0;
        Span<ulong> values = stackalloc ulong[3];
        int n = 0;
        var rest = line;
        while (true)
        {
            int i = 0;
            while (i < rest.Length && rest[i] is ' ' or '\t' or '\r') i++;
            rest = rest[i..];
            if (rest.Length == 0) break;
            int j = rest.IndexOfAny(' ', '\t', '\r');
            var field = j < 0 ? rest : rest[..j];
            rest = j < 0 ? default : rest[j..];
            if (n == 3 || ParseHexSpan(field) is not { } v) return false;
            values[n++] = v;
        }
        if (n != 3) return false;
        start = values[0]; end = values[1]; flags = values[2];
        return true;
    }

    /// <summary>The last path component of a sysfs link target (<c>../../../bus/pci/drivers/e1000e</c> → <c>e1000e</c>).</summary>
    public static string? LinkName(string? target)
    {
        if (string.IsNullOrEmpty(target)) return null;
        string t = target.TrimEnd('/');
        int slash = t.LastIndexOf('/');
        string name = slash < 0 ? t : t[(slash + 1)..];
        return name.Length == 0 ? null : name;
    }

    /// <summary>The group number from an <c>iommu_group</c> link (<c>../../../kernel/iommu_groups/12</c> → 12).</summary>
    public static int? ParseIommuGroupLink(string? target) =>
        int.TryParse(LinkName(target), NumberStyles.None, CultureInfo.InvariantCulture, out int id) ? id : null;

    /// <summary>The function a <c>physfn</c>/<c>virtfnN</c> link points at (<c>../0000:03:10.1</c>).</summary>
    public static PciAddress? ParseDeviceLink(string? target) =>
        PciAddress.TryParse(LinkName(target), out var address) ? address : null;

    private static ulong? ParseHexSpan(ReadOnlySpan<char> s)
    {
        if (s.Length > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s = s[2..];
        if (s.Length == 0 || s.Length > 16) return null;
        foreach (char c in s)
        {
            if (!char.IsAsciiHexDigit(c)) return null;
        }
        return ulong.Parse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
    }
}
