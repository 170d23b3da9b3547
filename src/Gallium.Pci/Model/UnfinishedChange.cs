namespace Gallium.Pci;

/// <summary>One endpoint of an <see cref="UnfinishedChange"/> as it was before the change began: the state the next
/// command returns it to.</summary>
/// <param name="Driver">Its driver then; null when unbound.</param>
/// <param name="DriverOverride">Its driver_override then; null when unset.</param>
/// <param name="Recorded">Whether its passthrough record existed then.</param>
/// <param name="RuleWritten">Whether its udev rule existed then.</param>
public sealed record UnfinishedMember(PciAddress Address, string? Driver, string? DriverOverride, bool Recorded, bool RuleWritten)
{
    public override string ToString() =>
        $"{Address} on {Driver ?? "no driver"}{(DriverOverride is null ? "" : $" (override {DriverOverride})")}{(Recorded ? ", recorded" : "")}";
}

/// <summary>An Enable or Disable of one IOMMU group that began and neither finished nor was rolled back: its process was
/// killed (SIGKILL, the OOM killer, a dropped SSH session) or the host lost power. It is written durably before the first
/// change and removed when the change completes or is undone, so it outlives the process. The next Enable or Disable on
/// the host repairs it first; until then the group's endpoints show <see cref="PassthroughState.Interrupted"/>, the boot
/// applies the members' start state (never half a group), and Test-GalliumPciPassthrough lists it.</summary>
public sealed record UnfinishedChange
{
    public required int IommuGroup { get; init; }
    public required PassthroughDirection Direction { get; init; }
    /// <summary>The process that began it.</summary>
    public int ProcessId { get; init; }
    public DateTimeOffset Started { get; init; }
    /// <summary>The kernel boot it began in (/proc/sys/kernel/random/boot_id); null when the kernel did not say.</summary>
    public string? BootId { get; init; }
    /// <summary>Each endpoint of the group as it was before the change.</summary>
    public required IReadOnlyList<UnfinishedMember> Members { get; init; }
    /// <summary>The module's state directories (and the apply script) that did not exist when the change began: a repair
    /// that goes back removes them again (a directory when empty, the script when no record is left), outermost first.</summary>
    public IReadOnlyList<string> AbsentDirectories { get; init; } = [];
    /// <summary>The file the change is recorded in.</summary>
    public string Path { get; init; } = "";

    /// <summary>The command that repairs it (any Enable or Disable run as root repairs every unfinished change first).</summary>
    public string Remedy => Members.Count == 0
        ? "Run Enable-GalliumPciPassthrough or Disable-GalliumPciPassthrough as root: either first returns the group to how it was."
        : $"Run Disable-GalliumPciPassthrough -Address {Members[0].Address} (or Enable-GalliumPciPassthrough) as root: either first "
          + $"returns IOMMU group {IommuGroup} to how it was before the interrupted {Direction}, then does what it was asked.";

    public override string ToString() =>
        $"{(Direction == PassthroughDirection.Enable ? "An Enable" : "A Disable")} of IOMMU group {IommuGroup} (PID {ProcessId}, {Started.UtcDateTime:u}) was interrupted";
}
