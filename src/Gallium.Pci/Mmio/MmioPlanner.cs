using System.Globalization;

namespace Gallium.Pci.Mmio;

/// <summary>Decides whether a VM's 64-bit MMIO window holds the BARs of the devices it will have, and the smallest
/// domain-XML change that makes it (REFERENCE §6). Pure: every input is a value.</summary>
public static class MmioPlanner
{
    /// <summary>Plans for the devices a VM will hold (existing hostdevs and the ones being added).</summary>
    /// <param name="spareRootPorts">Hot-plug capable root ports that will not hold these devices; OVMF pads each
    /// (REFERENCE §6.4 step 3). <see cref="VmMmioSettings.HotplugRootPorts"/> is a safe upper bound.</param>
    public static MmioPlan Plan(VmMmioSettings vm, HostCpu host, IEnumerable<PciDevice> devices, int spareRootPorts)
    {
        ArgumentNullException.ThrowIfNull(vm);
        ArgumentNullException.ThrowIfNull(host);
        var demands = MmioSizing.Demands(devices);
        var guest = GuestCpu.Resolve(vm, host);
        var plan = new MmioPlan
        {
            VmName = vm.Name, Outcome = MmioPlanOutcome.NotNeeded, Bars = demands,
            HostAddressBits = host.PhysicalAddressBits, GuestAddressBits = guest.PhysicalAddressBits,
            FixedGuestAddressBits = guest.PhysicalAddressBits, Reason = "",
        };
        string vmText = $"VM '{vm.Name}'";
        if (demands.Count == 0)
            return plan with { Reason = $"{vmText}: no 64-bit prefetchable BAR; the default MMIO window is enough." };

        ulong needed = MmioSizing.Aperture(demands, spareRootPorts);
        plan = plan with { NeededBytes = needed };
        ulong total = demands.Aggregate(0UL, (sum, d) => sum + d.Bar.Size);
        int deviceCount = demands.Select(d => d.Device).Distinct().Count();
        string need = $"{vmText} needs a {MmioBytes.Format(needed)} 64-bit MMIO window for {Describe(demands)}"
            + (deviceCount > 1 ? $" ({deviceCount} devices, {MmioBytes.Format(total)} of 64-bit BARs in all)" : "");

        if (vm.Firmware != VmFirmware.Ovmf)
        {
            // SeaBIOS sizes its own window; small BARs fit, large ones cannot be helped from the domain XML.
            if (needed <= OvmfFirmware.DefaultApertureBytes)
                return plan with { Reason = $"{need}; SeaBIOS places 64-bit BARs itself. Nothing to change." };
            string action = "Define the VM with UEFI firmware (<os firmware='efi'>, OVMF); that needs a guest OS installed for UEFI boot.";
            return Refuse(plan, "VmFirmwareNotUefi", ErrorKind.InvalidOperation,
                $"{need}, but it boots SeaBIOS (legacy BIOS), whose 64-bit window cannot be set from the domain XML. {action}",
                action);
        }

        var current = OvmfFirmware.Window(vm, guest, host, vm.OvmfApertureMiB);
        plan = plan with { CurrentWindow = current };
        string now = $"OVMF gives {current}; {Explain(guest)}";
        if (Fits(demands, spareRootPorts, current))
            return plan with { Reason = $"{need}; {now}. Nothing to change." };

        foreach (var (changes, settings) in Candidates(vm, host, guest, needed))
        {
            var fixedGuest = GuestCpu.Resolve(settings, host);
            var window = OvmfFirmware.Window(settings, fixedGuest, host, settings.OvmfApertureMiB);
            if (!Fits(demands, spareRootPorts, window)) continue;
            string fix = string.Join("; ", changes.Select(c => c.Description));
            return plan with
            {
                Outcome = MmioPlanOutcome.FixNeeded, Changes = changes, FixedWindow = window,
                FixedGuestAddressBits = fixedGuest.PhysicalAddressBits,
                Reason = $"{need}; {now}. Fix: {fix} -> {window}.",
            };
        }

        // Nothing fits: the smallest window OVMF could place sits at alignUp(RAM end, size) (REFERENCE §6.4 step 5).
        ulong bestEnd = OvmfFirmware.AlignUp(OvmfFirmware.FirstNonRamAddress(vm), needed) + needed;
        int bitsNeeded = 64 - System.Numerics.BitOperations.LeadingZeroCount(bestEnd - 1);
        // libvirt refuses maxphysaddr bits above the host's under TCG too, so the host's width bounds every fix.
        if (bitsNeeded > host.PhysicalAddressBits)
        {
            string action = $"Run this VM on a host whose CPU has at least {bitsNeeded} physical address bits, "
                + "or give it fewer or smaller-BAR devices (e.g. turn off Resizable BAR for the GPU).";
            return Refuse(plan, "MmioWindowBeyondHostAddressBits", ErrorKind.LimitsExceeded,
                $"{need}; {now}. The window would end at 0x{bestEnd:x}, beyond what the host CPU's "
                + $"{host.PhysicalAddressBits} physical address bits reach (0x{1UL << host.PhysicalAddressBits:x}, "
                + $"{MmioBytes.Format(1UL << host.PhysicalAddressBits)}). {action}",
                action);
        }
        string tooLarge = needed > OvmfFirmware.MaxApertureMiB << 20
            ? $"Assign fewer devices to this VM: OVMF accepts at most {MmioBytes.Format(OvmfFirmware.MaxApertureMiB << 20)}."
            : !guest.HasGigabytePages
                ? "OVMF limits a CPU without 1 GiB pages to 40 address bits: use host-passthrough or host-model, or add "
                  + "<feature policy='require' name='pdpe1gb'/> to the CPU model; or assign fewer devices to this VM."
                : "Use a host-passthrough CPU, or assign fewer devices to this VM.";
        return Refuse(plan, "MmioWindowTooSmall", ErrorKind.LimitsExceeded,
            $"{need}; {now}. No maxphysaddr or OVMF aperture setting gives a window that holds them. {tooLarge}", tooLarge);
    }

    /// <summary>Reads the settings from a domain definition, then plans; spare root ports default to all hot-plug root ports
    /// the definition has (an upper bound: ports that will hold the devices are counted too).</summary>
    public static MmioPlan PlanForDomain(string domainXml, HostCpu host, IEnumerable<PciDevice> devices, int? spareRootPorts = null)
    {
        var vm = MmioDomainXml.ReadSettings(domainXml);
        return Plan(vm, host, devices, spareRootPorts ?? vm.HotplugRootPorts);
    }

    static bool Fits(IReadOnlyList<MmioBarDemand> demands, int spareRootPorts, MmioWindow window) =>
        MmioSizing.Required(demands, spareRootPorts, window.Size) <= window.UsableBytes;

    /// <summary>Fixes in order of preference: the CPU alone (no taint), then the OVMF aperture alone, then both. A width the
    /// user chose (an existing <c>&lt;maxphysaddr&gt;</c>, e.g. kept at 39 bits for a VT-d limit, REFERENCE §6.3) is kept
    /// if an aperture alone will do.</summary>
    static IEnumerable<(IReadOnlyList<MmioChange> Changes, VmMmioSettings Settings)> Candidates(
        VmMmioSettings vm, HostCpu host, GuestCpu guest, ulong needed)
    {
        var cpuFixes = CpuCandidates(vm, host, guest).ToList();
        var cpuOnly = cpuFixes.Select(c => ((IReadOnlyList<MmioChange>)[c.Change], c.Settings));
        var apertureOnly = ApertureCandidates(vm, null, vm, needed);
        var both = cpuFixes.SelectMany(c => ApertureCandidates(vm, c.Change, c.Settings, needed));
        return vm.MaxPhysAddr is null ? cpuOnly.Concat(apertureOnly).Concat(both) : apertureOnly.Concat(cpuOnly).Concat(both);
    }

    /// <summary>Apertures from the needed size up: a larger one sits higher (base = alignUp(RAM end, size)) and reaches no
    /// further, so the smallest that fits wins.</summary>
    static IEnumerable<(IReadOnlyList<MmioChange> Changes, VmMmioSettings Settings)> ApertureCandidates(
        VmMmioSettings vm, MmioChange? cpuChange, VmMmioSettings settings, ulong needed)
    {
        for (ulong aperture = needed; aperture <= OvmfFirmware.MaxApertureMiB << 20; aperture <<= 1)
        {
            ulong mib = aperture >> 20;
            if (mib == vm.OvmfApertureMiB) continue;   // already set: that window was tried as the current or CPU-only one
            var apertureChange = new MmioChange(MmioChangeKind.OvmfAperture,
                $"add <qemu:commandline> -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string={mib} (OVMF aperture {MmioBytes.Format(aperture)})")
            { ApertureMiB = mib };
            IReadOnlyList<MmioChange> changes = cpuChange is null ? [apertureChange] : [cpuChange, apertureChange];
            yield return (changes, settings with { OvmfApertureMiB = mib });
        }
    }

    static IEnumerable<(MmioChange Change, VmMmioSettings Settings)> CpuCandidates(VmMmioSettings vm, HostCpu host, GuestCpu guest)
    {
        bool kvm = vm.Accelerator == VmAccelerator.Kvm;
        // passthrough = host-phys-bits=on: accepted with host-passthrough and host-model on libvirt 9.0; TCG ignores it.
        if (kvm && vm.CpuMode is VmCpuMode.HostPassthrough or VmCpuMode.HostModel or VmCpuMode.Maximum
            && vm.MaxPhysAddr?.Mode != MaxPhysAddrMode.Passthrough)
        {
            var mpa = new MaxPhysAddr(MaxPhysAddrMode.Passthrough);
            yield return (new MmioChange(MmioChangeKind.MaxPhysAddr,
                    $"set {mpa} in <cpu> (QEMU host-phys-bits=on: the guest gets the host's {host.PhysicalAddressBits} bits)")
                { MaxPhysAddr = mpa }, vm with { MaxPhysAddr = mpa });
        }
        // emulate bits=N: custom models (and under TCG every model); 41 <= N <= host bits, or Intel 36/39 on narrow hosts.
        bool emulate = vm.CpuMode is VmCpuMode.Custom or VmCpuMode.None
            || (!kvm && vm.CpuMode is VmCpuMode.HostModel or VmCpuMode.Maximum);
        if (!emulate) yield break;
        var widths = new List<int>();
        var vendor = GuestCpu.Resolve(vm with { MaxPhysAddr = null }, host).Vendor;
        if (vendor == CpuVendor.Intel) widths.AddRange(new[] { 36, 39 }.Where(b => b <= host.PhysicalAddressBits && host.PhysicalAddressBits < 41));
        for (int b = 41; b <= host.PhysicalAddressBits; b++) widths.Add(b);
        foreach (int bits in widths.Where(b => b != guest.PhysicalAddressBits || vm.MaxPhysAddr?.Mode != MaxPhysAddrMode.Emulate))
        {
            var mpa = new MaxPhysAddr(MaxPhysAddrMode.Emulate, bits);
            yield return (new MmioChange(MmioChangeKind.MaxPhysAddr,
                    $"set {mpa} in <cpu> (QEMU phys-bits={bits})") { MaxPhysAddr = mpa },
                vm with { MaxPhysAddr = mpa });
        }
    }

    static MmioPlan Refuse(MmioPlan plan, string id, ErrorKind kind, string message, string action) => plan with
    {
        Outcome = MmioPlanOutcome.Refused,
        Reason = message,
        Refusal = new GalliumException(id, kind, message, plan.VmName) { RecommendedAction = action },
    };

    static string Describe(IReadOnlyList<MmioBarDemand> demands)
    {
        var parts = demands.GroupBy(d => d.Device)
            .Select(g => $"{g.Key} {string.Join(", ", g.Select(d => $"BAR{d.Bar.Index} {MmioBytes.Format(d.Bar.Size)}"))}");
        return string.Join("; ", parts);
    }

    static string Explain(GuestCpu guest)
    {
        string vendor = guest.Vendor switch { CpuVendor.Intel => "GenuineIntel", CpuVendor.Amd => "AuthenticAMD", _ => "other vendor" };
        bool trusted = OvmfFirmware.TrustsAddressWidth(guest.PhysicalAddressBits, guest.Vendor);
        return string.Create(CultureInfo.InvariantCulture,
            $"guest CPU: {guest.PhysicalAddressBits} bits ({guest.Origin}), {vendor}{(trusted ? "" : ", not trusted by OVMF")}");
    }
}
