using System.Globalization;
using Gallium.Pci.Host;

namespace Gallium.Pci.Mmio;

/// <summary>What the large-BAR sizing needs to know about the host CPU, read from <c>/proc/cpuinfo</c>.</summary>
/// <param name="PhysicalAddressBits">"address sizes : N bits physical": the most a guest may be given (REFERENCE §6.3 caveats).</param>
/// <param name="Vendor">The host's CPUID vendor; under KVM every guest CPU model reports it.</param>
/// <param name="HasGigabytePages">The <c>pdpe1gb</c> flag; OVMF caps its address width at 40 bits without it (REFERENCE §6.1).</param>
public sealed record HostCpu(int PhysicalAddressBits, CpuVendor Vendor, bool HasGigabytePages)
{
    /// <summary>Reads <c>cpuinfo</c> through the procfs seam.</summary>
    /// <exception cref="GalliumException"><c>HostAddressBitsUnknown</c> when cpuinfo has no "address sizes" line.</exception>
    public static HostCpu Read(IProcfs procfs)
    {
        string? text = procfs.ReadText("cpuinfo");
        return text is null
            ? throw Unknown($"{procfs.Root}/cpuinfo cannot be read.")
            : Parse(text);
    }

    /// <summary>Parses the first processor block of a cpuinfo text.</summary>
    public static HostCpu Parse(string cpuinfo)
    {
        int? bits = null;
        var vendor = CpuVendor.Other;
        bool gigabytePages = false;
        foreach (string raw in cpuinfo.Split('\n'))
        {
            int colon = raw.IndexOf(':');
            if (colon < 0) continue;
            string key = raw[..colon].Trim();
            string value = raw[(colon + 1)..].Trim();
            switch (key)
            {
                case "vendor_id" when vendor == CpuVendor.Other:
                    vendor = VendorFromId(value);
                    break;
                case "flags" when !gigabytePages:
                    gigabytePages = value.Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains("pdpe1gb");
                    break;
                case "address sizes" when bits is null:
                    // "48 bits physical, 48 bits virtual"
                    string first = value.Split(',')[0].Trim();
                    string number = first.Split(' ')[0];
                    if (first.EndsWith("bits physical", StringComparison.Ordinal)
                        && int.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out int n) && n is >= 32 and <= 64)
                        bits = n;
                    break;
            }
        }
        return bits is int b
            ? new HostCpu(b, vendor, gigabytePages)
            : throw Unknown("/proc/cpuinfo has no 'address sizes : N bits physical' line.");
    }

    /// <summary>Maps a CPUID vendor string (cpuinfo <c>vendor_id</c>, libvirt <c>vendor_id</c>) to the vendors OVMF distinguishes.</summary>
    public static CpuVendor VendorFromId(string? vendorId) => vendorId?.Trim() switch
    {
        "GenuineIntel" => CpuVendor.Intel,
        "AuthenticAMD" => CpuVendor.Amd,
        _ => CpuVendor.Other,
    };

    static GalliumException Unknown(string why) => new HostAddressBitsUnknownException(why);
}

/// <summary>/proc/cpuinfo does not say how many physical address bits the CPU has, so no MMIO window can be sized.</summary>
public sealed class HostAddressBitsUnknownException(string why)
    : GalliumException("HostAddressBitsUnknown", ErrorKind.ReadError,
        $"Cannot tell how many physical address bits the host CPU has: {why}", "cpuinfo")
{
    public override bool IsHostLevel => true;
}
