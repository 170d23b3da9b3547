using System.Globalization;

namespace Gallium.Pci.Host;

/// <summary>Answers "can this host do PCI passthrough, and if not, what exactly must change?" from sysfs, procfs and /dev
/// only (REFERENCE §3.5): the IOMMU (firmware table, kernel command line, groups, units), interrupt remapping with VFIO's
/// allow_unsafe_interrupts, the ACS override (REFERENCE §8.4), vfio-pci. Says not ready, ready but unsafe, or ready.</summary>
public sealed class ReadinessProbe(HostContext host)
{
    /// <summary>How to change the kernel command line on a GRUB host, the common case.</summary>
    public const string GrubHowTo =
        "edit GRUB_CMDLINE_LINUX (or GRUB_CMDLINE_LINUX_DEFAULT) in /etc/default/grub, run update-grub " +
        "(grub2-mkconfig -o /boot/grub2/grub.cfg on Fedora/RHEL), then reboot";

    private readonly HostContext _host = host ?? throw new ArgumentNullException(nameof(host));

    public PassthroughReadiness Probe()
    {
        var sysfs = _host.Sysfs;
        string? cpuinfo = _host.Procfs.ReadText("cpuinfo");
        var cpu = ParseCpuVendor(cpuinfo);
        bool vm = ParseHypervisor(cpuinfo);
        string cmdline = _host.Procfs.ReadText("cmdline")?.Trim() ?? "";

        var tables = sysfs.List("firmware/acpi/tables");
        bool dmar = tables.Contains("DMAR"), ivrs = tables.Contains("IVRS");
        int groups = sysfs.List("kernel/iommu_groups").Count(n => int.TryParse(n, NumberStyles.None, CultureInfo.InvariantCulture, out _));
        var units = sysfs.List("class/iommu").Order(StringComparer.Ordinal).ToArray();
        bool enabled = groups > 0 || units.Length > 0;  // REFERENCE §3.5 practical detection (1), (2)

        // The table says which IOMMU driver applies (a VM may expose VT-d to an AMD CPU); without one, the CPU does.
        var kind = dmar ? CpuVendor.Intel : ivrs ? CpuVendor.Amd : cpu;
        var offenders = IommuOffParameters(cmdline, kind);
        var (problem, remedy, sentence) = enabled
            ? (IommuProblem.None, (string?)null, (string?)null)
            : Diagnose(cpu, kind, vm, dmar || ivrs, tables.Count > 0, offenders, HasIntelIommuOn(cmdline));

        var isolation = HostIsolation.Read(_host);
        bool? remapping = isolation.InterruptRemapping;
        bool loaded = sysfs.Exists("module/vfio_pci") || sysfs.Exists("bus/pci/drivers/vfio-pci");
        bool available = loaded || _host.Modules.IsAvailable("vfio-pci");
        bool node = _host.Devfs.Exists("vfio/vfio");
        bool root = _host.Identity.IsRoot;

        var problems = new List<string>();
        if (!root) problems.Add("This session is not root: enabling passthrough changes driver bindings, which needs root (run pwsh with sudo).");
        if (sentence is not null) problems.Add(sentence);
        var risks = new List<PassthroughCaveat>();
        // Without remapping VFIO refuses devices unless allow_unsafe_interrupts is set (REFERENCE §8.4): not ready; with it set,
        // ready but unsafe.
        if (enabled && isolation.UnsafeInterrupts() is { } interrupts)
        {
            if (isolation.VfioRefusesDevices) problems.Add($"{interrupts.Reason} {interrupts.Remedy} {interrupts.Security}");
            else risks.Add(interrupts);
        }
        if (isolation.AcsOverrideCaveat() is { } acs) risks.Add(acs);
        if (!available) problems.Add("The running kernel has no vfio-pci module (not in modules.dep, not built in): install a kernel with VFIO.");
        else if (loaded && !node) problems.Add("vfio-pci is loaded but /dev/vfio/vfio does not exist: check that /dev is a devtmpfs and the vfio module is loaded.");

        // Half-done changes and drift: the host is not in the state its records say, and each needs its repair first.
        var inventory = new DeviceInventory(_host, new PciIds(null));
        var (unfinished, unreadable) = inventory.ReadUnfinishedChanges();
        foreach (var change in unfinished) problems.Add($"{change} and is not repaired yet. {change.Remedy}");
        foreach (var bad in unreadable) problems.Add(bad.Message);
        var drifted = enabled
            ? inventory.ReadAll().Where(d => d.Problem is not null && d.PassthroughState != PassthroughState.Interrupted).ToArray()
            : [];
        foreach (var d in drifted) problems.Add($"{d.Address} ({d.PassthroughState}): {d.Problem}");

        return new PassthroughReadiness
        {
            UnfinishedChanges = unfinished,
            DriftedDevices = drifted,
            IsRoot = root,
            CpuVendor = cpu,
            IsVirtualMachine = vm,
            FirmwareIommuTable = dmar || ivrs,
            IommuEnabled = enabled,
            IommuUnits = units,
            IommuGroupCount = groups,
            IommuProblem = problem,
            Remedy = remedy,
            KernelCommandLine = cmdline,
            InterruptRemapping = remapping,
            AllowUnsafeInterrupts = isolation.AllowUnsafeInterrupts,
            AcsOverride = isolation.AcsOverride,
            Risks = risks,
            VfioPciAvailable = available,
            VfioPciLoaded = loaded,
            VfioDeviceNode = node,
            Problems = problems,
        };
    }

    /// <summary>Why the IOMMU is off, what to do, and the one-sentence problem.</summary>
    private static (IommuProblem, string?, string?) Diagnose(
        CpuVendor cpu, CpuVendor kind, bool vm, bool table, bool haveAcpiTables, IReadOnlyList<string> offenders, bool intelOn)
    {
        string tableName = kind == CpuVendor.Intel ? "DMAR" : kind == CpuVendor.Amd ? "IVRS" : "DMAR/IVRS";
        string remove = offenders.Count == 0 ? "" : $"remove {Quote(offenders)} from the kernel command line";

        if (!table && (!haveAcpiTables || cpu == CpuVendor.Other))
            return (IommuProblem.Unknown,
                "Enable the IOMMU (VT-d, AMD-Vi or the platform's SMMU) in the firmware setup and check the kernel log (dmesg | grep -i -e DMAR -e AMD-Vi -e iommu).",
                "The IOMMU is off (no IOMMU groups) and this host does not show why (no ACPI DMAR/IVRS table to read).");

        if (!table)
        {
            string remedy = vm
                ? "This host is a virtual machine: its hypervisor must give it a virtual IOMMU (QEMU: -machine q35,kernel-irqchip=split " +
                  "-device intel-iommu,intremap=on; libvirt: <iommu model='intel'><driver intremap='on'/></iommu>), then restart it."
                : cpu == CpuVendor.Intel
                    ? "Enable VT-d (Intel Virtualization Technology for Directed I/O) in the firmware (BIOS/UEFI) setup, then reboot."
                    : "Enable AMD-Vi in the firmware (BIOS/UEFI) setup (AMD: often 'IOMMU' or 'AMD-Vi'; enabling SVM alone is not enough), then reboot.";
            if (remove.Length > 0) remedy += $" Also {remove}: {GrubHowTo}.";
            return (IommuProblem.DisabledInFirmware, remedy,
                $"The IOMMU is disabled in the firmware: there is no ACPI {tableName} table ({(cpu == CpuVendor.Intel ? "Intel VT-d" : "AMD-Vi")}{(vm ? ", and this host is a virtual machine" : "")}).");
        }

        if (offenders.Count > 0)
        {
            // An Intel kernel whose default is off would stay off once intel_iommu=off is gone: replace it with =on.
            var intelOff = offenders.Where(o => o.StartsWith("intel_iommu=", StringComparison.Ordinal)).ToArray();
            var others = offenders.Except(intelOff).ToArray();
            var steps = new List<string>();
            if (intelOff.Length > 0) steps.Add($"replace {Quote(intelOff)} with intel_iommu=on");
            if (others.Length > 0) steps.Add($"remove {Quote(others)}");
            string what = string.Join(" and ", steps);
            string remedy = $"In the kernel command line, {what}: {GrubHowTo}.";
            return (IommuProblem.DisabledOnKernelCommandLine, remedy,
                $"The IOMMU is turned off on the kernel command line by {Quote(offenders)}.");
        }

        if (kind == CpuVendor.Intel)
        {
            return intelOn
                ? (IommuProblem.NotEnabledByKernel,
                   "intel_iommu=on is already set: check why the kernel did not enable VT-d (dmesg | grep -i -e DMAR -e IOMMU); a firmware update or a kernel built with CONFIG_INTEL_IOMMU may be needed.",
                   "The firmware describes VT-d (ACPI DMAR table) and intel_iommu=on is set, but the kernel did not enable the IOMMU.")
                : (IommuProblem.NotEnabledByKernel,
                   $"Add intel_iommu=on to the kernel command line (this kernel does not turn VT-d on by default): {GrubHowTo}.",
                   "The firmware describes VT-d (ACPI DMAR table) but the kernel did not enable it: this kernel's default is off.");
        }
        // amd_iommu=on is not a kernel option (REFERENCE §3.5): AMD-Vi is on by default when IVRS exists.
        return (IommuProblem.NotEnabledByKernel,
            "AMD-Vi is on by default when the IVRS table exists, so the kernel refused it: check dmesg | grep -i AMD-Vi for the reason " +
            "(often a firmware bug fixed by a firmware update, or a kernel built without CONFIG_AMD_IOMMU). Do not add amd_iommu=on: it is not a kernel option.",
            "The firmware describes AMD-Vi (ACPI IVRS table) but the kernel did not enable it.");
    }

    private static string Quote(IReadOnlyList<string> tokens) => string.Join(" and ", tokens.Select(t => $"'{t}'"));

    /// <summary>The kernel parameters, exactly as written, that turn the IOMMU of this kind off. Options are applied in order as
    /// the kernel does: a later intel_iommu=on undoes an earlier =off; amd_iommu=off and iommu=off cannot be undone.
    /// Everything after "--" belongs to init and is ignored ([K] kernel-parameters.txt, intel-iommu.c, amd/init.c, pci-dma.c).</summary>
    public static IReadOnlyList<string> IommuOffParameters(string? cmdline, CpuVendor kind)
    {
        var offenders = new List<string>();
        string? intelOff = null;
        foreach (var (token, key, options) in KernelCommandLine.Parameters(cmdline))
        {
            switch (key)
            {
                case "intel_iommu" when kind != CpuVendor.Amd:
                    foreach (string o in options.Split(','))
                    {
                        if (o.StartsWith("on", StringComparison.Ordinal)) intelOff = null;
                        else if (o.StartsWith("off", StringComparison.Ordinal)) intelOff = token;
                    }
                    break;
                case "amd_iommu" when kind != CpuVendor.Intel:
                    if (options.Contains("off", StringComparison.Ordinal) && !offenders.Contains(token)) offenders.Add(token);
                    break;
                case "iommu":
                    if (options.Split(',').Any(o => o.StartsWith("off", StringComparison.Ordinal)) && !offenders.Contains(token)) offenders.Add(token);
                    break;
            }
        }
        if (intelOff is not null) offenders.Insert(0, intelOff);
        return offenders;
    }

    private static bool HasIntelIommuOn(string cmdline) =>
        KernelCommandLine.Parameters(cmdline).Where(p => p.Key == "intel_iommu").SelectMany(p => p.Value.Split(','))
            .LastOrDefault(o => o.StartsWith("on", StringComparison.Ordinal) || o.StartsWith("off", StringComparison.Ordinal)) is { } last
        && last.StartsWith("on", StringComparison.Ordinal);

    /// <summary>The first <c>vendor_id</c> of /proc/cpuinfo: GenuineIntel → Intel; AuthenticAMD, HygonGenuine → Amd.</summary>
    public static CpuVendor ParseCpuVendor(string? cpuinfo)
    {
        foreach (string line in Lines(cpuinfo))
        {
            if (!line.StartsWith("vendor_id", StringComparison.Ordinal)) continue;
            int colon = line.IndexOf(':');
            return (colon < 0 ? "" : line[(colon + 1)..].Trim()) switch
            {
                "GenuineIntel" => CpuVendor.Intel,
                "AuthenticAMD" or "HygonGenuine" => CpuVendor.Amd,
                _ => CpuVendor.Other,
            };
        }
        return CpuVendor.Other;
    }

    /// <summary>True when the first <c>flags</c> line of /proc/cpuinfo has <c>hypervisor</c> (the CPUID bit a VM's CPU reports).</summary>
    public static bool ParseHypervisor(string? cpuinfo)
    {
        foreach (string line in Lines(cpuinfo))
        {
            if (!line.StartsWith("flags", StringComparison.Ordinal)) continue;
            int colon = line.IndexOf(':');
            return colon >= 0 && line[(colon + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries).Contains("hypervisor");
        }
        return false;
    }

    /// <summary>From /proc/interrupts: true when an interrupt chip is a remapped one ("IR-PCI-MSI", "IR-IO-APIC",
    /// "IR-PCI-MSIX-…"); false when interrupts are listed but none is remapped; null when there is nothing to tell.</summary>
    public static bool? ParseInterruptRemapping(string? interrupts)
    {
        bool any = false;
        foreach (string line in Lines(interrupts))
        {
            var t = line.AsSpan().TrimStart();
            int colon = t.IndexOf(':');
            if (colon <= 0 || !int.TryParse(t[..colon], NumberStyles.None, CultureInfo.InvariantCulture, out _)) continue;
            any = true;
            foreach (string field in line[(line.IndexOf(':') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                if (field.StartsWith("IR-", StringComparison.Ordinal)) return true;
            }
        }
        return any ? false : null;
    }

    private static IEnumerable<string> Lines(string? text) =>
        text is null ? [] : text.Split('\n');
}
