namespace Gallium.Pci.Host;

/// <summary>The host-wide facts that weaken every IOMMU group (REFERENCE §8.4): interrupt remapping and VFIO's
/// allow_unsafe_interrupts, and the ACS override on the kernel command line. Read once; turned into caveats for groups and
/// into readiness findings.</summary>
public sealed record HostIsolation
{
    /// <summary>The module parameter file: Y/N once vfio_iommu_type1 is loaded (REFERENCE §8.4).</summary>
    public const string AllowUnsafeInterruptsPath = "module/vfio_iommu_type1/parameters/allow_unsafe_interrupts";

    /// <summary>Interrupt remapping is active; null when /proc/interrupts does not say.</summary>
    public bool? InterruptRemapping { get; init; }
    /// <summary>vfio_iommu_type1.allow_unsafe_interrupts as the loaded module reports it, else as the command line sets it; null
    /// when neither says (the module is not loaded and the command line does not set it: the default is N).</summary>
    public bool? AllowUnsafeInterrupts { get; init; }
    /// <summary>The pcie_acs_override= token as written; null when absent.</summary>
    public string? AcsOverride { get; init; }

    public static HostIsolation Read(HostContext host)
    {
        ArgumentNullException.ThrowIfNull(host);
        string? cmdline = host.Procfs.ReadText("cmdline");
        return new HostIsolation
        {
            InterruptRemapping = ReadinessProbe.ParseInterruptRemapping(host.Procfs.ReadText("interrupts")),
            AllowUnsafeInterrupts = KernelCommandLine.ParseBoolParameter(host.Sysfs.ReadText(AllowUnsafeInterruptsPath))
                                    ?? KernelCommandLine.AllowUnsafeInterrupts(cmdline),
            AcsOverride = KernelCommandLine.AcsOverride(cmdline),
        };
    }

    /// <summary>Remapping is off and VFIO has not been told to accept that: every VM start with a passed-through device fails.</summary>
    public bool VfioRefusesDevices => InterruptRemapping == false && AllowUnsafeInterrupts != true;

    /// <summary>The caveats every group of this host carries: unsafe interrupts (remapping off), the ACS override.</summary>
    public IReadOnlyList<PassthroughCaveat> Caveats()
    {
        var caveats = new List<PassthroughCaveat>(2);
        if (UnsafeInterrupts() is { } interrupts) caveats.Add(interrupts);
        if (AcsOverrideCaveat() is { } acs) caveats.Add(acs);
        return caveats;
    }

    public const string InterruptSecurity =
        "Without remapping a VM's device can send interrupt messages (MSI writes) the host never gave it, which can crash or attack the host.";

    public const string AcsSecurity =
        "Devices the kernel now shows in separate groups can still reach each other by peer-to-peer DMA, so a VM's device may read or " +
        "write another device's memory that belongs to the host or another VM.";

    public UnsafeInterruptsCaveat? UnsafeInterrupts()
    {
        if (InterruptRemapping != false) return null;
        return AllowUnsafeInterrupts == true
            ? new UnsafeInterruptsCaveat
            {
                AllowUnsafeInterrupts = true,
                Reason = "Interrupt remapping is off and vfio_iommu_type1.allow_unsafe_interrupts=Y makes VFIO use devices anyway.",
                Remedy = "Enable interrupt remapping in the firmware setup (it is part of VT-d / AMD-Vi), then remove allow_unsafe_interrupts.",
                Security = InterruptSecurity,
            }
            : new UnsafeInterruptsCaveat
            {
                AllowUnsafeInterrupts = AllowUnsafeInterrupts,
                Reason = "Interrupt remapping is off (no \"IR-\" interrupt chips in /proc/interrupts): VFIO refuses to give the device " +
                         "to a VM, so the VM does not start, unless vfio_iommu_type1.allow_unsafe_interrupts=1.",
                Remedy = "Enable interrupt remapping in the firmware setup (part of VT-d / AMD-Vi). Only if that is impossible and every " +
                         "guest is trusted: 'options vfio_iommu_type1 allow_unsafe_interrupts=1' in /etc/modprobe.d, then reload vfio_iommu_type1.",
                Security = InterruptSecurity,
            };
    }

    public AcsOverrideCaveat? AcsOverrideCaveat() => AcsOverride is not { } token ? null : new AcsOverrideCaveat
    {
        Parameter = token,
        Reason = $"{token} is on the kernel command line: a kernel with the ACS override patch (Proxmox, linux-zen) splits IOMMU " +
                 "groups the hardware does not isolate, so this group may not be isolated at all.",
        Remedy = $"Remove {token} from the kernel command line ({ReadinessProbe.GrubHowTo}) and pass the whole hardware group " +
                 "through, or move the device to a slot whose root port supports ACS.",
        Security = AcsSecurity,
    };
}
