namespace Gallium.Pci.Passthrough;

/// <summary>Changing driver bindings needs root; refused before anything changes.</summary>
public sealed class RootRequiredException(object? target = null)
    : GalliumException("RootRequired", ErrorKind.PermissionDenied,
        "Changing PCI driver bindings needs root. Run PowerShell as root (sudo pwsh).", target)
{
    public override bool IsHostLevel => true;
}

/// <summary>The IOMMU is off, so no device can be isolated for a VM (REFERENCE §3.5). Carries the probe's remedy.</summary>
public sealed class IommuNotEnabledException : GalliumException
{
    public IommuNotEnabledException(PassthroughReadiness readiness, object? target)
        : base("IommuNotEnabled", ErrorKind.NotEnabled,
            "The IOMMU is not enabled on this host, so devices cannot be passed through. "
            + string.Join(" ", readiness.Problems.Where(p => p.Contains("IOMMU", StringComparison.Ordinal))), target)
    {
        Readiness = readiness;
        RecommendedAction = readiness.Remedy;
    }

    public PassthroughReadiness Readiness { get; }
    public override bool IsHostLevel => true;
}

/// <summary>A device the host is using (root disk, default-route NIC, console GPU, a BAR its firmware framebuffer holds, a
/// chipset function) is in the group (InvalidOperation: allowed only with the explicit flag).</summary>
public sealed class PciDeviceHostCriticalException : GalliumException
{
    public PciDeviceHostCriticalException(int iommuGroup, IReadOnlyList<Host.HostDependency> dependencies)
        : base("PciDeviceHostCritical", ErrorKind.InvalidOperation,
            $"Refusing to move IOMMU group {iommuGroup} to vfio-pci: the host depends on "
            + string.Join("; ", dependencies.Select(d => $"{d.Address} ({d.Reason})"))
            + ". Taking it away would break the host. Use -AllowHostCritical only if you have another way in.",
            dependencies[0].Address.ToString())
    {
        IommuGroup = iommuGroup;
        Dependencies = dependencies;
        RecommendedAction = string.Join(" ", dependencies.Select(d => d.Remedy).OfType<string>().Distinct()
            .DefaultIfEmpty("Pass through another device, or move the host off this one first (another disk, NIC or console)."));
    }

    public int IommuGroup { get; }
    public IReadOnlyList<Host.HostDependency> Dependencies { get; }
}

/// <summary>A physical function with SR-IOV virtual functions enabled: vfio-pci refuses to bind it (EBUSY, REFERENCE §4.4 step 0).</summary>
public sealed class PciDeviceHasVirtualFunctionsException(PciAddress address, int count)
    : GalliumException("PciDeviceHasVirtualFunctions", ErrorKind.InvalidOperation,
        $"{address} is an SR-IOV physical function with {count} virtual function(s) enabled; vfio-pci cannot take it while they exist. "
        + $"Pass through a virtual function instead, or disable them first (echo 0 > /sys/bus/pci/devices/{address}/sriov_numvfs).",
        address.ToString())
{
    public PciAddress Address { get; } = address;
    public int VirtualFunctionCount { get; } = count;
}

/// <summary>vfio-pci is not loaded and cannot be loaded (REFERENCE §4.6).</summary>
public sealed class VfioPciUnavailableException(string reason, object? target)
    : GalliumException("VfioPciUnavailable", ErrorKind.NotInstalled,
        $"The vfio-pci driver is not loaded and could not be loaded: {reason}", target)
{
    public string Reason { get; } = reason;
    public override bool IsHostLevel => true;
}

/// <summary>A VM definition references a member of the group, so it cannot go back to host drivers.</summary>
public sealed class IommuGroupAssignedException : GalliumException
{
    public IommuGroupAssignedException(int iommuGroup, IReadOnlyList<string> vms, object? target)
        : base("IommuGroupAssigned", ErrorKind.ResourceBusy,
            $"IOMMU group {iommuGroup} is assigned to VM(s) {string.Join(", ", vms)}; remove the devices from "
            + (vms.Count == 1 ? "that VM" : "those VMs") + " (Remove-GalliumVmPciDevice) before returning them to the host.", target)
    {
        IommuGroup = iommuGroup;
        Vms = vms;
    }

    public int IommuGroup { get; }
    public IReadOnlyList<string> Vms { get; }
}

/// <summary>Bridges stay on their port driver (REFERENCE §4.5): a bridge is never the device to pass through.</summary>
public sealed class PciDeviceIsBridgeException(PciAddress address, string? driver)
    : GalliumException("PciDeviceIsBridge", ErrorKind.InvalidOperation,
        $"{address} is a PCI bridge; bridges stay on {driver ?? "their port driver"} and are never given to vfio-pci. "
        + "Name an endpoint device behind it instead.", address.ToString());

/// <summary>The device is not in any IOMMU group (it is not behind the IOMMU).</summary>
public sealed class PciDeviceNotInIommuGroupException(PciAddress address)
    : GalliumException("PciDeviceNotInIommuGroup", ErrorKind.ObjectNotFound,
        $"{address} is in no IOMMU group: it is not behind an IOMMU and cannot be isolated for a VM.", address.ToString());

/// <summary>The group's members or their drivers changed between planning and running (someone else acted meanwhile).</summary>
public sealed class IommuGroupChangedException(int iommuGroup, IReadOnlyList<string> differences)
    : GalliumException("IommuGroupChanged", ErrorKind.InvalidOperation,
        $"IOMMU group {iommuGroup} changed since the plan was made ({string.Join("; ", differences)}); nothing was changed. Plan again.",
        iommuGroup)
{
    public IReadOnlyList<string> Differences { get; } = differences;
}

/// <summary>A step of an Enable/Disable failed; every earlier step was undone and the host re-read equal to how it began.</summary>
public sealed class PassthroughStepFailedException : GalliumException
{
    internal PassthroughStepFailedException(PassthroughPlan plan, PlanStep step, int? errno, string cause, Exception inner)
        : base("PciPassthroughStepFailed", KindFor(step, errno),
            $"{Verb(plan)} IOMMU group {plan.IommuGroup.Id} failed at step '{step.Description}'"
            + (step.Device is PciAddress d ? $" on {d}" : "")
            + (errno is int e ? $": {Errnos.Name(e)}" : "")
            + $" ({cause}). Every change was undone; the host is as it was.",
            step.Device?.ToString() ?? (object)plan.IommuGroup.Id, inner)
    {
        Device = step.Device;
        Step = step;
        Errno = errno;
        Cause = cause;
    }

    /// <summary>The device the failing step acted on; null for a group-wide step (the /dev/vfio check, the apply script).</summary>
    public PciAddress? Device { get; }
    public PlanStep Step { get; }
    public StepKind StepKind => Step.Kind;
    /// <summary>The kernel's errno for a failed write (110 ETIMEDOUT for one that blocked too long); null for a failed check.</summary>
    public int? Errno { get; }
    public string? ErrnoName => Errno is int e ? Errnos.Name(e) : null;
    public string Cause { get; }
    public bool RolledBack => true;

    private static string Verb(PassthroughPlan plan) => plan.Direction == PassthroughDirection.Enable ? "Enabling passthrough for" : "Disabling passthrough for";

    private static ErrorKind KindFor(PlanStep step, int? errno) => errno switch
    {
        Errnos.ETIMEDOUT => ErrorKind.OperationTimeout,
        Errnos.EBUSY => ErrorKind.ResourceBusy,
        null => step.Kind is StepKind.Verify ? ErrorKind.DeviceError : ErrorKind.WriteError,
        _ => ErrorKind.WriteError,
    };
}

/// <summary>A step failed and undoing the earlier steps did not bring the host back: says exactly what is left half-done.</summary>
public sealed class PassthroughRollbackFailedException : GalliumException
{
    internal PassthroughRollbackFailedException(PassthroughPlan plan, PlanStep failedStep, Exception failure,
        IReadOnlyList<string> failedUndos, IReadOnlyList<string> leftovers)
        : base("PciPassthroughRollbackFailed", ErrorKind.DeviceError,
            $"IOMMU group {plan.IommuGroup.Id}: step '{failedStep.Description}' failed ({failure.Message}) and the rollback did not "
            + "restore the host. Left half-done: " + string.Join("; ", leftovers.Concat(failedUndos).DefaultIfEmpty("(unknown)"))
            + ". Fix these by hand (or run Disable-GalliumPciPassthrough / Enable-GalliumPciPassthrough again).",
            failedStep.Device?.ToString() ?? (object)plan.IommuGroup.Id, failure)
    {
        Device = failedStep.Device;
        Step = failedStep;
        Errno = (failure as KernelWriteException)?.Errno;
        FailedUndos = failedUndos;
        Leftovers = leftovers;
    }

    public PciAddress? Device { get; }
    public PlanStep Step { get; }
    public int? Errno { get; }
    /// <summary>Each undo that failed, with its error.</summary>
    public IReadOnlyList<string> FailedUndos { get; }
    /// <summary>Each way the host now differs from how it began (a device's driver or override, a persisted file, /dev/vfio/N).</summary>
    public IReadOnlyList<string> Leftovers { get; }
    public bool RolledBack => false;
}
