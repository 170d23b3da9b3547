using System.Globalization;
using Gallium.Pci.Host;

namespace Gallium.Pci.Passthrough;

/// <summary>How an unfinished change was repaired.</summary>
/// <param name="WentBack">True: the group is as it was before the change; false: going back failed, so the change was
/// completed instead.</param>
/// <param name="Summary">One sentence for the user (a warning).</param>
public sealed record RepairedChange(UnfinishedChange Change, bool WentBack, string Summary)
{
    public override string ToString() => Summary;
}

/// <summary>Brings a group an interrupted Enable/Disable left half-done back to the start state its record kept — or,
/// where going back is impossible, forward to the change's end state — kernel bindings and persisted files together.
/// Every step is idempotent, so a repair that is itself interrupted is simply done again by the next command. The caller
/// holds the host lock (<see cref="HostChange"/>).</summary>
internal sealed class UnfinishedChangeRepair
{
    private readonly HostContext _host;
    private readonly DriverBinder _binder;
    private readonly PassthroughPersistence _persistence;
    private readonly PendingChanges _pending;

    public UnfinishedChangeRepair(HostContext host)
    {
        _host = host;
        _binder = new DriverBinder(host);
        _persistence = new PassthroughPersistence(host.Paths);
        _pending = new PendingChanges(_persistence);
    }

    public IReadOnlyList<RepairedChange> RepairAll(Interruption say)
    {
        var changes = _pending.ReadAll();  // an unreadable record stops us: repairing from a guess could undo the wrong thing
        if (changes.Count == 0)
        {
            RemoveCrashLeftovers(say);
            return [];
        }
        if (!_host.Identity.IsRoot) throw new RootRequiredException($"IOMMU group {changes[0].IommuGroup}");
        var repaired = new List<RepairedChange>();
        foreach (var change in changes)
        {
            var result = Repair(change, say);
            say.Warn(result.Summary);
            repaired.Add(result);
        }
        RemoveCrashLeftovers(say);
        return repaired;
    }

    /// <summary>What a process killed inside an atomic file write leaves: its temp file (".name.&lt;32 hex&gt;.tmp", never read
    /// by udev or the apply script), and an empty pending directory made for a record it did not get to write.</summary>
    private void RemoveCrashLeftovers(Interruption say)
    {
        if (!_host.Identity.IsRoot) return;
        foreach (string dir in new[] { _persistence.RecordsDirectory, _pending.Directory, _host.Paths.UdevRulesDirectory, _host.Paths.LibexecDirectory })
        {
            if (!Directory.Exists(dir)) continue;
            foreach (string path in Directory.EnumerateFiles(dir, ".*.tmp"))
            {
                string name = Path.GetFileName(path);
                int dot = name.Length - ".tmp".Length - 33;
                if (dot > 1 && name[dot] == '.' && name.AsSpan(dot + 1, 32).ContainsAnyExcept("0123456789abcdef") == false)
                    _persistence.RemoveFile(path, say.Say);
            }
        }
        if (Directory.Exists(_pending.Directory) && !Directory.EnumerateFileSystemEntries(_pending.Directory).Any())
            _persistence.RemoveEmptyDirectories([_pending.Directory], say.Say);
    }

    private RepairedChange Repair(UnfinishedChange change, Interruption say)
    {
        string what = $"{(change.Direction == PassthroughDirection.Enable ? "An Enable" : "A Disable")} of IOMMU group {change.IommuGroup}"
            + $" (PID {change.ProcessId.ToString(CultureInfo.InvariantCulture)}, started {change.Started.UtcDateTime.ToString("u", CultureInfo.InvariantCulture)}"
            + (change.BootId is not null && PendingChanges.CurrentBootId(_host.Procfs) is { } boot && boot != change.BootId ? ", before the last reboot" : "")
            + ") was interrupted";
        say.Say($"{what}: returning the group to how it was before ({change.Path})");

        var present = change.Members.Where(m => _binder.DeviceExists(m.Address)).ToArray();
        var problems = new List<string>();
        foreach (var m in change.Members.Except(present)) say.Say($"{m.Address} is no longer on the host: nothing to restore for it");

        // Files first: from here on, a reboot applies the start state too, whatever the kernel part below manages.
        foreach (var m in present) Try(problems, () => RestoreFiles(m.Address, m.Recorded, m.RuleWritten, say));
        foreach (var m in present) Try(problems, () => RestoreBinding(m, say));
        var back = present.Select(m => IsBack(m)).OfType<string>().ToList();
        if (problems.Count == 0 && back.Count == 0)
        {
            // The apply script the change installed goes again unless some record (of another group) still needs it.
            if (change.AbsentDirectories.Contains(_persistence.ScriptPath) && _persistence.RecordedDevices().Count == 0
                && _persistence.ReadFile(_persistence.ScriptPath) is not null)
                _persistence.RemoveFile(_persistence.ScriptPath, say.Say);
            _pending.Remove(change.IommuGroup, say.Say, change.AbsentDirectories.Where(d => d != _persistence.ScriptPath).ToArray());
            return new RepairedChange(change, true,
                $"{what}; returned it to how it was before: {string.Join(", ", present.Select(Describe).DefaultIfEmpty("no member is left"))}.");
        }

        // Going back failed (a host driver that will not bind again, say): complete the change instead.
        say.Say($"returning IOMMU group {change.IommuGroup} to its start failed ({string.Join("; ", problems.Concat(back))}); completing the {change.Direction} instead");
        var forward = new List<string>();
        bool enable = change.Direction == PassthroughDirection.Enable;
        foreach (var m in present) Try(forward, () => RestoreFiles(m.Address, enable, enable, say));
        foreach (var m in present) Try(forward, () => Complete(m.Address, enable, say));
        var done = present.Select(m => IsDone(m.Address, enable)).OfType<string>().ToList();
        if (forward.Count == 0 && done.Count == 0)
        {
            _pending.Remove(change.IommuGroup, say.Say, change.AbsentDirectories.Where(d => d == _pending.Directory).ToArray());
            return new RepairedChange(change, false,
                $"{what}; going back failed ({string.Join("; ", problems.Concat(back))}), so the {change.Direction} was completed: "
                + string.Join(", ", present.Select(m => $"{m.Address} on {_binder.CurrentDriver(m.Address) ?? "no driver"}")) + ".");
        }
        throw new UnfinishedChangeRepairFailedException(change, problems.Concat(back).Concat(forward).Concat(done).ToArray());
    }

    private static void Try(List<string> problems, Action action)
    {
        try { action(); }
        catch (Exception e) when (e is GalliumException or IOException or UnauthorizedAccessException) { problems.Add(e.Message); }
    }

    private static string Describe(UnfinishedMember m) => $"{m.Address} on {m.Driver ?? "no driver"}";

    /// <summary>Record and udev rule exactly as wanted (present with today's content, or absent); the apply script with them.</summary>
    private void RestoreFiles(PciAddress a, bool record, bool rule, Interruption say)
    {
        if (record || rule)
        {
            string script = _persistence.ScriptContent;
            if (_persistence.ReadFile(_persistence.ScriptPath) != script)
                _persistence.WriteFile(_persistence.ScriptPath, script, PassthroughPersistence.ScriptMode, say.Say);
        }
        Want(_persistence.RecordPath(a), record ? PassthroughPersistence.RecordContent : null, say);
        Want(_persistence.RulePath(a), rule ? _persistence.RuleContent(a) : null, say);
    }

    private void Want(string path, string? content, Interruption say)
    {
        string? now = _persistence.ReadFile(path);
        if (content is null) { if (now is not null || File.Exists(path)) _persistence.RemoveFile(path, say.Say); }
        else if (now != content) _persistence.WriteFile(path, content, PassthroughPersistence.FileMode, say.Say);
    }

    /// <summary>Back to the member's start binding. A start on a host driver that is no longer loaded (the host rebooted
    /// without it) counts as back once the device is off vfio-pci with its start override: the host side, as it began.</summary>
    private void RestoreBinding(UnfinishedMember m, Interruption say)
    {
        var a = m.Address;
        string? now = _binder.CurrentDriver(a);
        if (m.Driver == DriverBinder.VfioPci)
        {
            if (now != DriverBinder.VfioPci)
            {
                _binder.SetOverride(a, DriverBinder.VfioPci, say.Say);
                if (now is not null) _binder.Unbind(a, now, say.Say);
                _binder.Probe(a, say.Say);
            }
        }
        else if (m.Driver is string host && _binder.DriverLoaded(host))
        {
            if (now != host)
            {
                if (now is not null) _binder.Unbind(a, now, say.Say);
                _binder.RebindTo(a, host, m.DriverOverride, say.Say);
                return;
            }
        }
        else if (now == DriverBinder.VfioPci)
        {
            _binder.RestoreOverride(a, m.DriverOverride, say.Say);
            _binder.Unbind(a, now, say.Say);
            if (m.Driver is not null && m.DriverOverride != DriverBinder.VfioPci) _binder.Probe(a, say.Say);
            return;
        }
        if (_binder.DriverOverride(a) != m.DriverOverride) _binder.RestoreOverride(a, m.DriverOverride, say.Say);
    }

    /// <summary>Null when the member is back at its start; else what differs.</summary>
    private string? IsBack(UnfinishedMember m)
    {
        string? driver = _binder.CurrentDriver(m.Address), ov = _binder.DriverOverride(m.Address);
        bool driverOk = m.Driver == DriverBinder.VfioPci ? driver == DriverBinder.VfioPci
            : m.Driver is string host && _binder.DriverLoaded(host) ? driver == host
            : driver != DriverBinder.VfioPci;
        return driverOk && ov == m.DriverOverride ? null
            : $"{m.Address} is on {driver ?? "no driver"} with override {ov ?? "(null)"} (it began on {m.Driver ?? "no driver"}, override {m.DriverOverride ?? "(null)"})";
    }

    /// <summary>The member as the change would have left it: on vfio-pci with the override (Enable), or off vfio-pci with none (Disable).</summary>
    private void Complete(PciAddress a, bool enable, Interruption say)
    {
        string? now = _binder.CurrentDriver(a);
        if (enable)
        {
            if (_binder.DriverOverride(a) != DriverBinder.VfioPci) _binder.SetOverride(a, DriverBinder.VfioPci, say.Say);
            if (now == DriverBinder.VfioPci) return;
            if (now is not null) _binder.Unbind(a, now, say.Say);
            _binder.Probe(a, say.Say);
        }
        else
        {
            if (_binder.DriverOverride(a) is not null) _binder.ClearOverride(a, say.Say);
            if (now != DriverBinder.VfioPci) return;
            _binder.Unbind(a, now, say.Say);
            _binder.Probe(a, say.Say);
        }
    }

    private string? IsDone(PciAddress a, bool enable)
    {
        string? driver = _binder.CurrentDriver(a), ov = _binder.DriverOverride(a);
        bool ok = enable ? driver == DriverBinder.VfioPci && ov == DriverBinder.VfioPci : driver != DriverBinder.VfioPci && ov is null;
        return ok ? null : $"{a} is on {driver ?? "no driver"} with override {ov ?? "(null)"}";
    }
}

/// <summary>An unfinished change could be neither undone nor completed: the host needs a hand. Its record is kept, so
/// the next command tries again; the message lists what is left.</summary>
public sealed class UnfinishedChangeRepairFailedException : GalliumException
{
    public UnfinishedChangeRepairFailedException(UnfinishedChange change, IReadOnlyList<string> leftovers)
        : base("UnfinishedChangeRepairFailed", ErrorKind.DeviceError,
            $"{change}, and repairing it failed: {string.Join("; ", leftovers)}. Its record {change.Path} is kept; fix the devices by hand "
            + "(Get-GalliumIommuGroup shows them), then run Enable-GalliumPciPassthrough or Disable-GalliumPciPassthrough again.",
            change.IommuGroup)
    {
        Change = change;
        Leftovers = leftovers;
        RecommendedAction = change.Remedy;
    }

    public UnfinishedChange Change { get; }
    public IReadOnlyList<string> Leftovers { get; }
    public override bool IsHostLevel => true;
}

/// <summary>The user declined (-Confirm) the repair of an unfinished change that this command would have to make first.</summary>
public sealed class UnfinishedChangeNotRepairedException : GalliumException
{
    public UnfinishedChangeNotRepairedException(UnfinishedChange change)
        : base("UnfinishedChangeNotRepaired", ErrorKind.OperationStopped,
            $"{change}; this command repairs it before anything else, and the repair was declined, so nothing was changed.", change.IommuGroup)
    {
        Change = change;
        RecommendedAction = change.Remedy;
    }

    public UnfinishedChange Change { get; }
    public override bool IsHostLevel => true;
}
