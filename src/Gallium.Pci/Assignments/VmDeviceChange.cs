using Gallium.Pci.Mmio;

namespace Gallium.Pci.Assignments;

public enum VmDeviceAction { Add, Remove, Repair }

/// <summary>What one command asked for one VM, gathered over its whole pipeline: every device it adds to (or removes from)
/// that VM is planned, sized and confirmed together, so -WhatIf shows exactly what the real run does.</summary>
public sealed record VmDeviceRequest(VmDeviceAction Action, string VmName, IReadOnlyList<PciAddress> Addresses)
{
    public static VmDeviceRequest Repair(string vmName) => new(VmDeviceAction.Repair, vmName, []);
}

public enum VmEditKind { AttachController, AttachHostdev, DetachHostdev, DetachController }

/// <summary>One libvirt per-device edit of a VM's persistent definition (atomic: <c>virDomainAttachDeviceFlags</c> /
/// <c>DetachDeviceFlags</c> with AFFECT_CONFIG, REFERENCE §8.3), and its one-line description.</summary>
public sealed record VmDeviceEdit(VmEditKind Kind, PciAddress? Source, string Xml, string Description)
{
    public bool IsAttach => Kind is VmEditKind.AttachController or VmEditKind.AttachHostdev;
}

/// <summary>One IOMMU group the change is about: the address the user named, and the group's endpoint functions.</summary>
public sealed record VmGroupChange(PciAddress Requested, int? IommuGroup, IReadOnlyList<PciAddress> Functions);

/// <summary>Something the admin should know about one device of a plan (written as a warning by the cmdlet, -WhatIf too).
/// The place for per-device caveats (NUMA placement, reset methods) of a VM change.</summary>
public sealed record VmDeviceWarning(PciAddress Device, string Message);

/// <summary>The plan of one command for one VM: hostdev and root-port edits through libvirt's atomic per-device calls, and
/// the large-BAR fix (REFERENCE §6) sized for everything the VM will hold. Nothing changes here; <see cref="VmDeviceRunner"/>
/// carries it out under the host lock, after planning it again there.</summary>
public sealed record VmDeviceChange
{
    public required VmDeviceRequest Request { get; init; }
    public required string VmName { get; init; }
    public VmDeviceAction Action => Request.Action;
    public IReadOnlyList<VmGroupChange> Groups { get; init; } = [];
    /// <summary>Per-device edits in the order the runner makes them (Add: root ports, then hostdevs; Remove: hostdevs, then
    /// the root ports Gallium added that nothing uses any more).</summary>
    public IReadOnlyList<VmDeviceEdit> Edits { get; init; } = [];
    /// <summary>The MMIO fix for the devices the VM holds after the change; null when no sizing applies at all.</summary>
    public MmioTransition? Mmio { get; init; }
    /// <summary>Every device (as the host shows it now) the VM holds after the change: what the fix is sized for.</summary>
    public IReadOnlyList<PciDevice> DevicesAfter { get; init; } = [];
    /// <summary>Devices left out of the change, each with why (not enabled, assigned elsewhere, ...): reported, not fatal.</summary>
    public IReadOnlyList<GalliumException> Refusals { get; init; } = [];
    public IReadOnlyList<VmDeviceWarning> Warnings { get; init; } = [];
    /// <summary>Set when the change as a whole cannot be made (the devices' MMIO window cannot fit): nothing of it is done.</summary>
    public GalliumException? Refused { get; init; }

    /// <summary>Throws <see cref="Refused"/>, if any; else returns the change.</summary>
    public VmDeviceChange ThrowIfRefused() => Refused is { } e ? throw e : this;

    /// <summary>The host functions the change adds or removes.</summary>
    public IReadOnlyList<PciAddress> Functions => Groups.SelectMany(g => g.Functions).Distinct().ToArray();
    public bool ChangesMmio => Mmio is { Change: not MmioFixChange.None };
    public bool IsNoOp => Refused is null && Edits.Count == 0 && !ChangesMmio;

    /// <summary>The definition with the edits made, for sizing what the VM will hold before anything is done.</summary>
    internal string Project(string domainXml) => Project(domainXml, Edits);

    internal static string Project(string domainXml, IReadOnlyList<VmDeviceEdit> edits) => Libvirt.DomainXml.Project(domainXml,
        edits.Where(e => e.IsAttach).Select(e => e.Xml), edits.Where(e => !e.IsAttach).Select(e => e.Xml));

    /// <summary>One line per edit and one for the MMIO fix: the -WhatIf text. A change that moves the fix is made as one
    /// define holding its device edits too (the fix and the hostdevs arrive and leave together); any other is made through
    /// libvirt's per-device calls, in this order.</summary>
    public IReadOnlyList<string> Lines
    {
        get
        {
            var lines = new List<string>();
            string? mmio = Mmio?.Describe(VmName);
            // The fix is in place before devices arrive and stays until they have gone: the VM never holds a device its
            // window is too small for, even if the command is killed part-way.
            if (Action != VmDeviceAction.Remove && mmio is not null) lines.Add(mmio);
            lines.AddRange(Edits.Where(e => Action != VmDeviceAction.Remove || e.Kind == VmEditKind.DetachHostdev).Select(e => e.Description));
            if (Action == VmDeviceAction.Remove && mmio is not null) lines.Add(mmio);
            if (Action == VmDeviceAction.Remove) lines.AddRange(Edits.Where(e => e.Kind == VmEditKind.DetachController).Select(e => e.Description));
            return lines;
        }
    }
}
