using Gallium.Pci.Host;

namespace Gallium.Pci.Passthrough;

/// <summary>What one step does to the host.</summary>
public enum StepKind
{
    /// <summary>Write a driver name to the device's driver_override.</summary>
    SetOverride,
    /// <summary>Write "\n" to driver_override (clears it).</summary>
    ClearOverride,
    /// <summary>Write the address to the current driver's unbind.</summary>
    Unbind,
    /// <summary>Write the address to /sys/bus/pci/drivers_probe.</summary>
    Probe,
    /// <summary>Re-read the driver link (or /dev/vfio/N): no write; fails when the kernel did not do what was asked.</summary>
    Verify,
    /// <summary>Write a persisted file (record, udev rule, apply script) atomically.</summary>
    Persist,
    /// <summary>Remove a persisted file (record, udev rule).</summary>
    RemovePersisted,
}

/// <summary>What happens to each device.</summary>
public enum DeviceChangeKind
{
    /// <summary>The device keeps its driver (a bridge on pcieport, an endpoint already where it should be).</summary>
    Stays,
    /// <summary>The device moves to vfio-pci.</summary>
    ToVfioPci,
    /// <summary>The device leaves vfio-pci for whatever host driver the kernel picks (none if none matches).</summary>
    ToHostDriver,
}

/// <summary>One device of the group and what the plan does to it.</summary>
/// <param name="FromDriver">Its driver now; null when unbound.</param>
/// <param name="ToDriver">Its driver afterwards; null when unbound or (Disable) when the kernel will pick.</param>
/// <param name="Description">One line for -WhatIf, e.g. "0000:01:00.0 NVIDIA Corporation AD102 [GeForce RTX 4090] (VGA compatible controller): nvidia -> vfio-pci".</param>
public sealed record DeviceChange(PciDevice Device, DeviceChangeKind Kind, string? FromDriver, string? ToDriver, string Description)
{
    public PciAddress Address => Device.Address;
    public override string ToString() => Description;
}

/// <summary>One ordered step of a plan with its undo. Do is at most one kernel write (or one file replace); Undo puts back
/// the state the step found (which can take up to three writes: a rebind goes through the override).</summary>
public sealed class PlanStep
{
    private readonly Action<Action<string>> _do;
    private readonly Action<Action<string>> _undo;

    internal PlanStep(StepKind kind, PciAddress? device, string description, Action<Action<string>> doStep, Action<Action<string>> undoStep,
        string? persistedPath = null)
    {
        Kind = kind;
        Device = device;
        Description = description;
        _do = doStep;
        _undo = undoStep;
        PersistedPath = persistedPath;
    }

    public StepKind Kind { get; }
    /// <summary>The device acted on; null for a group-wide step.</summary>
    public PciAddress? Device { get; }
    /// <summary>What the step does, e.g. "unbind 0000:01:00.0 from nvidia".</summary>
    public string Description { get; }
    /// <summary>For Persist/RemovePersisted: the file.</summary>
    public string? PersistedPath { get; }

    /// <summary>Performs the step; <paramref name="narrate"/> hears each kernel write and file change before it is made.</summary>
    public void Do(Action<string> narrate) => _do(narrate);
    /// <summary>Puts back what <see cref="Do"/> changed.</summary>
    public void Undo(Action<string> narrate) => _undo(narrate);

    public override string ToString() => Description;
}

/// <summary>An Enable or Disable of one IOMMU group: the group as read at planning time, one change per member, and the
/// ordered steps (empty when there is nothing to do). Made by <see cref="PassthroughPlanner"/>, run by <see cref="PlanRunner"/>.</summary>
public sealed class PassthroughPlan
{
    internal PassthroughPlan(PassthroughDirection direction, PciAddress address, IommuGroup group, IReadOnlyList<DeviceChange> changes,
        IReadOnlyList<PlanStep> steps, IReadOnlyList<HostDependency> hostCriticalAllowed, IReadOnlyList<MemberState> before,
        Action revalidate)
    {
        Direction = direction;
        Address = address;
        IommuGroup = group;
        Changes = changes;
        Steps = steps;
        HostCriticalAllowed = hostCriticalAllowed;
        Before = before;
        Revalidate = revalidate;
    }

    public PassthroughDirection Direction { get; }
    /// <summary>The device the caller named (the plan covers its whole group).</summary>
    public PciAddress Address { get; }
    public IommuGroup IommuGroup { get; }
    /// <summary>One per device of the group, in address order.</summary>
    public IReadOnlyList<DeviceChange> Changes { get; }
    public IReadOnlyList<PlanStep> Steps { get; }
    /// <summary>Nothing to do: the group is already where the plan would put it (Enable again is a quiet no-op).</summary>
    public bool IsNoOp => Steps.Count == 0;
    /// <summary>Host dependencies the caller chose to override (allowHostCritical); empty otherwise.</summary>
    public IReadOnlyList<HostDependency> HostCriticalAllowed { get; }
    /// <summary>Whether running the plan needs vfio-pci loaded.</summary>
    public bool NeedsVfioPci => Direction == PassthroughDirection.Enable && Steps.Any(s => s.Kind is StepKind.Probe);

    /// <summary>Every member's driver and override when planned: the runner refuses if the host no longer matches.</summary>
    internal IReadOnlyList<MemberState> Before { get; }
    /// <summary>Re-checks the planner's refusals that can change meanwhile (VM assignments); throws when one now applies.</summary>
    internal Action Revalidate { get; }

    public override string ToString() =>
        $"{Direction} passthrough for IOMMU group {IommuGroup.Id}: " + (IsNoOp ? "nothing to do" : $"{Steps.Count} steps");
}

/// <summary>The binding state of one group member that a plan depends on and a rollback must restore.</summary>
internal sealed record MemberState(PciAddress Address, string? Driver, string? Override)
{
    public override string ToString() => $"{Address} driver {Driver ?? "(none)"}, override {Override ?? "(null)"}";
}
