using System.Diagnostics;
using Gallium.Pci.Host;
using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Bench;

/// <summary>The parts of the first Get-GalliumPciDevice, run in a fresh pwsh after Import-Module and timed from C#, so that
/// PowerShell's own first-call costs stay out of them: what the start-up breakdown adds up.</summary>
public static class StartupParts
{
    /// <summary>Sysfs, PciIds and Libvirt one after the other in this process, in the order the cmdlet needs them (the first
    /// pays the first use of the file APIs, as in the cmdlet): "sysfs pciids libvirt" in milliseconds.</summary>
    public static string MeasureAll() =>
        string.Join(' ', new[] { "Sysfs", "PciIds", "Libvirt" }.Select(p => Measure(p).ToString("F2", System.Globalization.CultureInfo.InvariantCulture)));

    /// <summary>Milliseconds for <paramref name="part"/>: PciIds (read and index pci.ids, name this host's functions),
    /// Sysfs (read every function, no names), Libvirt (load libvirt, read-only connect, list the domains, index hostdevs).</summary>
    public static double Measure(string part)
    {
        var host = HostContext.FromEnvironment();
        var sw = Stopwatch.StartNew();
        switch (part)
        {
            case "PciIds":
                // This host's ids, read before the clock starts: the part is the file and the lookups only.
                var present = new List<(ushort Vendor, ushort Device, uint Class)>();
                foreach (string name in host.Sysfs.List("bus/pci/devices"))
                {
                    string? v = host.Sysfs.ReadText($"bus/pci/devices/{name}/vendor"), d = host.Sysfs.ReadText($"bus/pci/devices/{name}/device");
                    string? c = host.Sysfs.ReadText($"bus/pci/devices/{name}/class");
                    if (v is not null && d is not null && c is not null)
                        present.Add((Convert.ToUInt16(v.Trim(), 16), Convert.ToUInt16(d.Trim(), 16), Convert.ToUInt32(c.Trim(), 16)));
                }
                sw.Restart();
                var ids = new PciIds(host.PciIdsPath);
                foreach (var (v, d, c) in present) { _ = ids.VendorName(v); _ = ids.DeviceName(v, d); _ = ids.ClassName(c); }
                break;
            case "Sysfs":
                _ = new DeviceInventory(host, new PciIds(null)).ReadAll();
                break;
            case "Libvirt":
                using (var c = LibvirtConnection.Open(null, readOnly: true)) _ = AssignmentIndex.FromDomains(c.ListDomains());
                break;
            default:
                throw new ArgumentException($"Unknown part '{part}' (PciIds, Sysfs, Libvirt).", nameof(part));
        }
        return sw.Elapsed.TotalMilliseconds;
    }
}
