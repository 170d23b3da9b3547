namespace Gallium.Pci.Host;

/// <summary>What the module has persisted for passthrough, read once per inventory: the functions with a record, the
/// records and udev rules with exactly today's content, and the functions in an unfinished change. Rules are read only
/// for functions that have a record or are on vfio-pci, so a large host costs one directory listing, not a file per function.</summary>
internal sealed class PersistedState
{
    private readonly PassthroughPersistence _files;
    private readonly HashSet<string> _recordNames;
    private readonly Dictionary<PciAddress, UnfinishedChange> _pending = [];

    private PersistedState(PassthroughPersistence files, HashSet<string> recordNames, IReadOnlyList<UnfinishedChange> pending,
        IReadOnlyList<GalliumException> unreadable)
    {
        _files = files;
        _recordNames = recordNames;
        Pending = pending;
        Unreadable = unreadable;
        foreach (var change in pending)
            foreach (var m in change.Members) _pending[m.Address] = change;
    }

    public IReadOnlyList<UnfinishedChange> Pending { get; }
    /// <summary>Unfinished-change records that could not be read (shown as problems; a changing command refuses to guess).</summary>
    public IReadOnlyList<GalliumException> Unreadable { get; }

    public static PersistedState Read(HostPaths paths)
    {
        var files = new PassthroughPersistence(paths);
        var names = new HashSet<string>(StringComparer.Ordinal);
        if (Directory.Exists(files.RecordsDirectory))
        {
            try
            {
                foreach (string path in Directory.EnumerateFileSystemEntries(files.RecordsDirectory)) names.Add(Path.GetFileName(path));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* unreadable: nothing is known to be recorded */ }
        }
        var (pending, unreadable) = new PendingChanges(files).TryReadAll();
        return new PersistedState(files, names, pending, unreadable);
    }

    public UnfinishedChange? PendingFor(PciAddress address) => _pending.GetValueOrDefault(address);

    /// <summary>A record that says vfio-pci (a symbolic link or other content counts as no record: the apply script ignores it too).</summary>
    public bool HasRecord(PciAddress address) =>
        _recordNames.Contains(address.ToString()) && _files.ReadFile(_files.RecordPath(address)) == PassthroughPersistence.RecordContent;

    public bool HasRule(PciAddress address) => _files.ReadFile(_files.RulePath(address)) == _files.RuleContent(address);

    /// <summary>driverctl persists it for vfio-pci (/etc/driverctl.d/pci-&lt;bdf&gt;): its own record and udev rule (issue 13).</summary>
    public bool DriverctlOwns(PciAddress address) => _files.DriverctlDriver(address) == DriverBinder.VfioPci;

    /// <summary>Which tool persists the device for vfio-pci.</summary>
    public BindingPersistence PersistedBy(PciAddress address) =>
        (_recordNames.Contains(address.ToString()) && HasRecord(address)) ? BindingPersistence.Gallium
        : DriverctlOwns(address) ? BindingPersistence.Driverctl
        : BindingPersistence.None;

    /// <summary>The device's passthrough state from its binding and what is persisted for it, with the problem in words.</summary>
    public (PassthroughState State, string? Problem) StateOf(PciAddress address, string? driver, string? driverOverride)
    {
        if (PendingFor(address) is { } change)
            return (PassthroughState.Interrupted,
                $"Part of {(change.Direction == PassthroughDirection.Enable ? "an Enable" : "a Disable")} of IOMMU group {change.IommuGroup} "
                + $"that was interrupted (PID {change.ProcessId}, {change.Started.UtcDateTime:u}). {change.Remedy}");
        bool onVfio = driver == DriverBinder.VfioPci;
        bool armed = driverOverride == DriverBinder.VfioPci;
        bool record = (onVfio || armed || _recordNames.Contains(address.ToString())) && HasRecord(address);
        // A device driverctl persists for vfio-pci is persisted: driverctl's record and rule stand for ours (one owner per device).
        bool driverctl = !record && DriverctlOwns(address);
        record |= driverctl;
        if (!onVfio && !armed && !record)
            return (driver is null ? PassthroughState.Unbound : PassthroughState.Host, null);

        bool rule = driverctl || HasRule(address);
        string repair = $"Enable-GalliumPciPassthrough -Address {address} repairs it; Disable-GalliumPciPassthrough -Address {address} returns it to the host.";
        if (onVfio)
        {
            if (!record || !rule)
                return (PassthroughState.NotPersisted,
                    $"On vfio-pci, but {(!record && !rule ? "nothing is recorded for it" : !record ? "its record is missing" : "its udev rule is missing or outdated")}: "
                    + $"it returns to its host driver at the next reboot. Enable-GalliumPciPassthrough -Address {address} makes it persistent; "
                    + $"Disable-GalliumPciPassthrough -Address {address} returns it to the host now.");
            if (!armed)
                return (PassthroughState.Drifted,
                    $"On vfio-pci and recorded, but its driver_override is {driverOverride ?? "unset"}: an unbind or rescan could hand it to a host driver. {repair}");
            return (PassthroughState.Enabled, null);
        }
        string bound = driver is null ? "no driver is bound (vfio-pci did not take it)" : $"it is bound to {driver}";
        string why = record ? "Recorded for vfio-pci" : "Its driver_override names vfio-pci";
        return (PassthroughState.Drifted, $"{why}, but {bound}: the host driver won at boot, it was rebound by hand, or a record came back from a backup. {repair}");
    }
}
