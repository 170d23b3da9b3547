using System.Globalization;
using System.Text.RegularExpressions;
using Gallium.Pci.Host;
using Xunit.Abstractions;

namespace Gallium.Pci.Tests.Inventory;

/// <summary>This machine's real /sys and /proc, read only, against pciutils and the raw files.</summary>
public sealed class RealHostTests(ITestOutputHelper output)
{
    private static HostContext RealHost()
    {
        var procfs = new LinuxProcfs("/proc");
        return new HostContext
        {
            Sysfs = new LinuxSysfs("/sys"),
            Procfs = procfs,
            Devfs = new LinuxDevfs("/dev"),
            Modules = new Modprobe(procfs),
            Identity = new ProcessIdentity(),
            PciIdsPath = PciIdsLocator.Find(null),
        };
    }

    [Fact]
    public void ReadAll_matches_lspci_addresses_ids_class_revision_and_driver()
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        var devices = new DeviceInventory(RealHost()).ReadAll();
        var elapsed = started.Elapsed;

        // lspci -Dn: "0000:00:01.0 ff00: 1af4:1045 (rev 01) (prog-if 01)"
        var line = new Regex(@"^(\S+) ([0-9a-f]{4}): ([0-9a-f]{4}):([0-9a-f]{4})(?: \(rev ([0-9a-f]{2})\))?(?: \(prog-if ([0-9a-f]{2})\))?");
        var lspci = Lspci.Run("-Dn").Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => line.Match(l)).ToArray();
        Assert.All(lspci, m => Assert.True(m.Success, $"unparsed lspci line '{m.Value}'"));

        Assert.NotEmpty(devices);
        Assert.Equal(lspci.Select(m => m.Groups[1].Value), devices.Select(d => d.Address.ToString()));
        foreach (var (d, m) in devices.Zip(lspci))
        {
            string ours = string.Create(CultureInfo.InvariantCulture,
                $"{d.ClassCode >> 8:x4} {d.VendorId:x4}:{d.DeviceId:x4} rev {d.Revision:x2} prog-if {d.ClassCode & 0xff:x2}");
            string theirs = $"{m.Groups[2].Value} {m.Groups[3].Value}:{m.Groups[4].Value} rev {Or00(m.Groups[5])} prog-if {Or00(m.Groups[6])}";
            Assert.Equal(theirs, ours);
        }

        // lspci -vmm -k: "Driver:" is the bound driver.
        var records = Lspci.VmmRecords(Lspci.Run("-D", "-vmm", "-k"));
        Assert.Equal(devices.Count, records.Count);
        foreach (var (d, r) in devices.Zip(records))
        {
            Assert.Equal(d.Address.ToString(), r["Slot"]);
            Assert.Equal(r.GetValueOrDefault("Driver"), d.Driver);
        }

        output.WriteLine($"{devices.Count} functions; ReadAll took {elapsed.TotalMilliseconds:0.0} ms (first call: includes JIT and the pci.ids parse)");
        foreach (var d in devices)
            output.WriteLine($"{d}  driver={d.Driver ?? "-"} group={d.IommuGroup?.ToString(CultureInfo.InvariantCulture) ?? "-"} bars={string.Join(", ", d.Bars)}");

        static string Or00(Group g) => g.Success ? g.Value : "00";
    }

    [Fact]
    public void Names_match_lspci()
    {
        var host = RealHost();
        Assert.True(host.PciIdsPath is not null, "No system pci.ids: CI installs the pci.ids package (.ci/run).");
        var ids = new PciIds(host.PciIdsPath);
        var devices = new DeviceInventory(host, ids).ReadAll();
        var records = Lspci.VmmRecords(Lspci.Run("-D", "-vmm", "-i", host.PciIdsPath!));
        Assert.Equal(devices.Count, records.Count);
        foreach (var (d, r) in devices.Zip(records))
        {
            Assert.Equal(d.Address.ToString(), r["Slot"]);
            Assert.Equal(r["Vendor"], Lspci.VendorText(d.VendorId, NullIfEmpty(d.VendorName)));
            Assert.Equal(r["Device"], Lspci.DeviceText(d.DeviceId, NullIfEmpty(d.DeviceName)));
            Assert.Equal(r["Class"], Lspci.ClassText(d.ClassCode, ids));
            // ClassName is the subclass name, else the base class name (lspci then appends the code in brackets).
            Assert.StartsWith(d.ClassName, r["Class"]);
            output.WriteLine($"{d.Address}: '{d.ClassName}' / '{d.VendorName}' / '{d.DeviceName}'  lspci: '{r["Class"]}' / '{r["Vendor"]}' / '{r["Device"]}'");
        }

        static string? NullIfEmpty(string s) => s.Length == 0 ? null : s;
    }

    [Fact]
    public void Groups_agree_with_kernel_iommu_groups()
    {
        var inv = new DeviceInventory(RealHost());
        var kernelGroups = Directory.Exists("/sys/kernel/iommu_groups") ? Directory.GetDirectories("/sys/kernel/iommu_groups") : [];
        Assert.Equal(kernelGroups.Length > 0, inv.IommuOn);
        var groups = inv.ReadGroups();
        foreach (var g in groups)
        {
            var members = Directory.GetFileSystemEntries($"/sys/kernel/iommu_groups/{g.Id}/devices").Select(Path.GetFileName)
                .Where(n => PciAddress.TryParse(n, out _)).Order(StringComparer.Ordinal);
            Assert.Equal(members, g.Devices.Select(d => d.Address.ToString()));
        }
        output.WriteLine($"IOMMU {(inv.IommuOn ? "on" : "off")}: {groups.Count} groups with PCI functions");
    }

    [Fact]
    public void Readiness_on_this_machine_agrees_with_the_raw_files()
    {
        var r = new ReadinessProbe(RealHost()).Probe();
        output.WriteLine($"CPU {r.CpuVendor}, VM {r.IsVirtualMachine}, table {r.FirmwareIommuTable}, IOMMU {r.IommuEnabled}, " +
                         $"problem {r.IommuProblem}, IR {r.InterruptRemapping?.ToString() ?? "unknown"}, vfio-pci available {r.VfioPciAvailable} loaded {r.VfioPciLoaded}, /dev/vfio/vfio {r.VfioDeviceNode}");
        output.WriteLine($"Remedy: {r.Remedy}");
        foreach (string p in r.Problems) output.WriteLine($"Problem: {p}");

        string cpuinfo = File.ReadAllText("/proc/cpuinfo");
        bool dmar = File.Exists("/sys/firmware/acpi/tables/DMAR"), ivrs = File.Exists("/sys/firmware/acpi/tables/IVRS");
        bool groups = Directory.Exists("/sys/kernel/iommu_groups") && Directory.EnumerateFileSystemEntries("/sys/kernel/iommu_groups").Any();
        Assert.Equal(dmar || ivrs, r.FirmwareIommuTable);
        Assert.Equal(File.ReadAllText("/proc/cmdline").Trim(), r.KernelCommandLine);
        Assert.Equal(cpuinfo.Contains("GenuineIntel") ? CpuVendor.Intel : cpuinfo.Contains("AuthenticAMD") ? CpuVendor.Amd : r.CpuVendor, r.CpuVendor);
        Assert.Equal(File.Exists("/dev/vfio/vfio"), r.VfioDeviceNode);
        if (groups)
        {
            Assert.True(r.IommuEnabled);
            Assert.Equal(IommuProblem.None, r.IommuProblem);
        }
        else if (!dmar && !ivrs && r.CpuVendor != CpuVendor.Other)
        {
            // This machine (a VM with no virtual IOMMU): no DMAR/IVRS table, so the firmware is where to fix it.
            Assert.False(r.IommuEnabled);
            Assert.Equal(IommuProblem.DisabledInFirmware, r.IommuProblem);
            Assert.False(r.IsReady);
            Assert.Contains(r.Problems, p => p.Contains("disabled in the firmware"));
        }
        else Assert.NotEqual(IommuProblem.None, r.IommuProblem);
    }
}
