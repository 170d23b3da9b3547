using System.Globalization;
using Gallium.Pci.Host;

namespace Gallium.Pci.Passthrough;

/// <summary>Runs a <see cref="PassthroughPlan"/> all or nothing: through <see cref="HostChange"/> (the host lock, and any
/// change an earlier process left unfinished repaired first), with vfio-pci loaded, after checking the group is still as
/// planned. Before its first write it records the change durably (<see cref="PendingChanges"/>), so a process that dies
/// part-way leaves a trace the next command repairs; the record goes once the change is complete or undone.
/// On a failing step it undoes the earlier steps in reverse order, re-reads the host and checks it is exactly as it
/// began, then throws <see cref="PassthroughStepFailedException"/> (or <see cref="PassthroughRollbackFailedException"/>
/// saying precisely what is left half-done). A stop request (<see cref="Interruption"/>) is acted on between steps, never
/// inside one: the change is undone the same way, or finished when it arrives during the last step, and
/// <see cref="PassthroughInterruptedException"/> says which.</summary>
public sealed class PlanRunner
{
    public static readonly TimeSpan DefaultLockTimeout = TimeSpan.FromSeconds(30);

    private readonly HostContext _host;
    private readonly TimeSpan _lockTimeout;
    private readonly DriverBinder _binder;
    private readonly PassthroughPersistence _persistence;
    private readonly PendingChanges _pending;
    /// <param name="lockTimeout">How long to wait for another Gallium operation holding the host lock; default 30 s.</param>
    public PlanRunner(HostContext host, TimeSpan? lockTimeout = null)
    {
        _host = host ?? throw new ArgumentNullException(nameof(host));
        _lockTimeout = lockTimeout ?? DefaultLockTimeout;
        _binder = new DriverBinder(host);
        _persistence = new PassthroughPersistence(host.Paths);
        _pending = new PendingChanges(_persistence);
    }

    /// <summary>Runs the plan. A no-op plan returns at once. <paramref name="verbose"/> hears every kernel step
    /// ("write vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override"), file change and check; a callback that
    /// throws (a stopping pipeline) is a stop request, as is <paramref name="stop"/>.</summary>
    public void Run(PassthroughPlan plan, Action<string>? verbose = null, CancellationToken stop = default) =>
        Run(plan, new Interruption(verbose, stop));

    /// <summary>Runs the plan, narrating and warning through <paramref name="say"/> (the unfinished changes repaired first
    /// are told through its warnings).</summary>
    public void Run(PassthroughPlan plan, Interruption say)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(say);
        if (plan.IsNoOp)
        {
            say.Say($"IOMMU group {plan.IommuGroup.Id}: nothing to do");
            return;
        }
        if (!_host.Identity.IsRoot) throw new RootRequiredException(plan.Address.ToString());

        using var change = HostChange.Begin(_host, _lockTimeout, say);
        if (say.StopRequested) throw new PassthroughInterruptedException(plan, say.Cause, PassthroughInterruptedException.Ending.NothingChanged);
        if (plan.NeedsVfioPci) EnsureVfioPci(plan, say);

        int group = plan.IommuGroup.Id;
        var start = PassthroughPlanner.ReadMembers(_host, group);
        var changed = Differences(plan.Before, start);
        if (changed.Count > 0) throw new IommuGroupChangedException(group, changed);
        plan.Revalidate();
        if (say.StopRequested) throw new PassthroughInterruptedException(plan, say.Cause, PassthroughInterruptedException.Ending.NothingChanged);

        bool startNode = GroupNodeExists(group);
        var startFiles = plan.Steps.Select(s => s.PersistedPath).OfType<string>().Distinct()
            .ToDictionary(p => p, p => _persistence.ReadFile(p), StringComparer.Ordinal);
        var run = new RunState(start, startNode, startFiles, _pending.Write(Trace(plan, start), say.Say));

        for (int i = 0; i < plan.Steps.Count; i++)
        {
            var step = plan.Steps[i];
            say.Say($"step {i + 1}/{plan.Steps.Count}: {step.Description}");
            if (say.StopRequested) throw Stopped(plan, i - 1, run, say);
            try
            {
                step.Do(say.Say);
            }
            catch (Exception failure) when (failure is not OutOfMemoryException)
            {
                // Whatever failed (the kernel, a file, a bug), the steps before it are undone; nothing is left half-done.
                var (undoFailures, leftovers) = UndoThrough(plan, i - 1, $"step {i + 1} failed ({failure.Message})", run, say);
                throw Failed(plan, step, failure, undoFailures, leftovers);
            }
        }
        _pending.Remove(group, say.Say, run.TraceDirectories);
        if (say.StopRequested) throw new PassthroughInterruptedException(plan, say.Cause, PassthroughInterruptedException.Ending.Completed);
    }

    /// <summary>A stop request seen at the boundary after step <paramref name="last"/> (-1: before the first): undo what was done.</summary>
    private PassthroughInterruptedException Stopped(PassthroughPlan plan, int last, RunState run, Interruption say)
    {
        var (failures, left) = UndoThrough(plan, last, last < 0 ? "stop requested before the first step" : $"stop requested after step {last + 1}",
            run, say);
        var ending = failures.Count > 0 || left.Count > 0 ? PassthroughInterruptedException.Ending.RollbackIncomplete
            : last < 0 ? PassthroughInterruptedException.Ending.NothingChanged
            : PassthroughInterruptedException.Ending.RolledBack;
        return new PassthroughInterruptedException(plan, say.Cause, ending, left.Concat(failures).ToArray());
    }

    /// <summary>The change as the next command must see it if this process dies: each endpoint's start binding and files.</summary>
    private UnfinishedChange Trace(PassthroughPlan plan, IReadOnlyList<MemberState> start) => new()
    {
        IommuGroup = plan.IommuGroup.Id,
        Direction = plan.Direction,
        ProcessId = Environment.ProcessId,
        Started = DateTimeOffset.UtcNow,
        BootId = PendingChanges.CurrentBootId(_host.Procfs),
        Members = start
            .Where(m => plan.Changes.FirstOrDefault(c => c.Address == m.Address) is not { Device.IsBridge: true })
            .Select(m => new UnfinishedMember(m.Address, m.Driver, m.Override,
                _persistence.ReadFile(_persistence.RecordPath(m.Address)) is not null,
                _persistence.ReadFile(_persistence.RulePath(m.Address)) is not null))
            .ToArray(),
        AbsentDirectories = AbsentStateDirectories(),
    };

    /// <summary>The state directories (and their parents) that do not exist yet, outermost first: a repair that goes back
    /// removes what the change created, as a rollback does.</summary>
    private IReadOnlyList<string> AbsentStateDirectories()
    {
        var absent = new SortedSet<string>(StringComparer.Ordinal);
        foreach (string dir in new[] { _persistence.RecordsDirectory, _persistence.PendingDirectory, _host.Paths.UdevRulesDirectory, _host.Paths.LibexecDirectory })
            for (string? d = dir; !string.IsNullOrEmpty(d) && !Directory.Exists(d) && !File.Exists(d); d = Path.GetDirectoryName(d)) absent.Add(d);
        if (!File.Exists(_persistence.ScriptPath)) absent.Add(_persistence.ScriptPath);
        return absent.OrderBy(d => d.Count(c => c == '/')).ThenBy(d => d, StringComparer.Ordinal).ToArray();
    }

    private void EnsureVfioPci(PassthroughPlan plan, Interruption say)
    {
        if (_binder.DriverLoaded(DriverBinder.VfioPci)) return;
        // Load first: an override naming a driver that is not loaded leaves the device driverless (REFERENCE §4.6, Appendix A.4).
        say.Say("modprobe vfio-pci");
        string? reason = _host.Modules.Load(DriverBinder.VfioPci);
        if (reason is not null) throw new VfioPciUnavailableException(reason, plan.Address.ToString());
        if (!_binder.DriverLoaded(DriverBinder.VfioPci))
            throw new VfioPciUnavailableException(
                $"modprobe vfio-pci succeeded but {_host.Sysfs.Root.TrimEnd('/')}/{DriverBinder.DriverPath(DriverBinder.VfioPci)} did not appear.",
                plan.Address.ToString());
    }

    /// <summary>Undoes steps <paramref name="last"/>..0 in reverse order, then re-reads the group, its /dev/vfio node and
    /// the persisted files and compares them with the start. The unfinished-change record goes only when nothing is left:
    /// otherwise it stays for the next command to repair.</summary>
    private (IReadOnlyList<string> FailedUndos, IReadOnlyList<string> Leftovers) UndoThrough(PassthroughPlan plan, int last, string why,
        RunState run, Interruption say)
    {
        say.Say($"{why}; undoing {last + 1} step(s) in reverse order");
        var failedUndos = new List<string>();
        for (int j = last; j >= 0; j--)
        {
            say.Say($"undo step {j + 1}: {plan.Steps[j].Description}");
            try { plan.Steps[j].Undo(say.Say); }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Keep going: each later undo still brings its own part back, and the re-read below says what is left.
                failedUndos.Add($"undoing '{plan.Steps[j].Description}' failed: {e.Message}");
                say.Say(failedUndos[^1]);
            }
        }

        var leftovers = new List<string>();
        leftovers.AddRange(Differences(run.Start, PassthroughPlanner.ReadMembers(_host, plan.IommuGroup.Id)));
        bool node = GroupNodeExists(plan.IommuGroup.Id);
        if (node != run.StartNode) leftovers.Add($"/dev/vfio/{plan.IommuGroup.Id} {(node ? "exists" : "is gone")} (it {(run.StartNode ? "existed" : "did not exist")})");
        foreach (var (path, content) in run.StartFiles)
        {
            string? now = _persistence.ReadFile(path);
            if (now != content) leftovers.Add(content is null ? $"{path} exists (it did not)" : now is null ? $"{path} is missing" : $"{path} has other content");
        }
        if (leftovers.Count == 0 && failedUndos.Count == 0)
        {
            try { _pending.Remove(plan.IommuGroup.Id, say.Say, run.TraceDirectories); }
            catch (GalliumException e) { leftovers.Add($"its unfinished-change record could not be removed ({e.Message})"); }
        }
        say.Say(leftovers.Count == 0 && failedUndos.Count == 0
            ? "rolled back: the host is as it began"
            : $"rollback incomplete: {string.Join("; ", leftovers.Concat(failedUndos))}; the unfinished-change record stays for the next command");
        return (failedUndos, leftovers);
    }

    /// <summary>What a run began from (a rollback must restore exactly this) and the directories its trace needed.</summary>
    private sealed record RunState(IReadOnlyList<MemberState> Start, bool StartNode, IReadOnlyDictionary<string, string?> StartFiles,
        IReadOnlyList<string> TraceDirectories);

    private static GalliumException Failed(PassthroughPlan plan, PlanStep step, Exception failure, IReadOnlyList<string> failedUndos, IReadOnlyList<string> leftovers)
    {
        if (failedUndos.Count > 0 || leftovers.Count > 0)
            return new PassthroughRollbackFailedException(plan, step, failure, failedUndos, leftovers);
        int? errno = (failure as KernelWriteException)?.Errno;
        string cause = failure.Message;
        if (errno == Errnos.ETIMEDOUT && step.Kind == StepKind.Unbind)
            cause += " The kernel may still finish that unbind once whoever holds the device lets it go.";
        return new PassthroughStepFailedException(plan, step, errno, cause, failure);
    }

    private bool GroupNodeExists(int group) => _host.Devfs.Exists($"vfio/{group.ToString(CultureInfo.InvariantCulture)}");

    private static IReadOnlyList<string> Differences(IReadOnlyList<MemberState> expected, IReadOnlyList<MemberState> actual)
    {
        var result = new List<string>();
        var now = actual.ToDictionary(m => m.Address);
        foreach (var e in expected)
        {
            if (!now.Remove(e.Address, out var a)) result.Add($"{e.Address} left the group");
            else if (a != e) result.Add($"{e.Address} has driver {a.Driver ?? "(none)"}, override {a.Override ?? "(null)"} (was {e.Driver ?? "(none)"}, {e.Override ?? "(null)"})");
        }
        result.AddRange(now.Keys.Select(a => $"{a} joined the group"));
        return result;
    }
}

/// <summary>An Enable or Disable was stopped part-way (Ctrl+C, a pipeline stop, a stream set to Stop): says how it ended.</summary>
public sealed class PassthroughInterruptedException : ChangeInterruptedException
{
    public enum Ending
    {
        /// <summary>The stop came before the first write.</summary>
        NothingChanged,
        /// <summary>Every step done was undone and the host re-read equal to its start.</summary>
        RolledBack,
        /// <summary>The stop came during the last step: the change is complete.</summary>
        Completed,
        /// <summary>Undoing failed; what is left is listed, and the unfinished-change record stays for the next command.</summary>
        RollbackIncomplete,
    }

    internal PassthroughInterruptedException(PassthroughPlan plan, Exception cause, Ending ending, IReadOnlyList<string>? leftovers = null)
        : base("PciPassthroughInterrupted", Describe(plan, ending, leftovers ?? []), plan.Address.ToString(), cause,
            ending is Ending.NothingChanged or Ending.RolledBack)
    {
        IommuGroup = plan.IommuGroup.Id;
        How = ending;
        Leftovers = leftovers ?? [];
    }

    public int IommuGroup { get; }
    public Ending How { get; }
    public IReadOnlyList<string> Leftovers { get; }

    private static string Describe(PassthroughPlan plan, Ending ending, IReadOnlyList<string> leftovers)
    {
        string what = $"{plan.Direction} passthrough for IOMMU group {plan.IommuGroup.Id}";
        return ending switch
        {
            Ending.NothingChanged => $"Stopped before {what} changed anything.",
            Ending.RolledBack => $"Stopped: {what} was rolled back; the group is as it began ("
                + string.Join(", ", plan.Changes.Where(c => !c.Device.IsBridge).Select(c => $"{c.Address} on {c.FromDriver ?? "no driver"}")) + ").",
            Ending.Completed => $"Stopped during the last step of {what}: the change is complete.",
            _ => $"Stopped: {what} could not be rolled back completely ({string.Join("; ", leftovers)}). "
                + "The next Enable-GalliumPciPassthrough or Disable-GalliumPciPassthrough on this host repairs it first.",
        };
    }
}
