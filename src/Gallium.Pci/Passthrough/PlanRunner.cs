using System.Globalization;
using Gallium.Pci.Host;

namespace Gallium.Pci.Passthrough;

/// <summary>Runs a <see cref="PassthroughPlan"/> all or nothing: under the host lock, with vfio-pci loaded, after checking the
/// group is still as planned; on a failing step it undoes the earlier steps in reverse order, re-reads the host and checks
/// it is exactly as it began, then throws <see cref="PassthroughStepFailedException"/> (or
/// <see cref="PassthroughRollbackFailedException"/> saying precisely what is left half-done).</summary>
public sealed class PlanRunner
{
    public static readonly TimeSpan DefaultLockTimeout = TimeSpan.FromSeconds(30);

    private readonly HostContext _host;
    private readonly TimeSpan _lockTimeout;
    private readonly DriverBinder _binder;
    private readonly PassthroughPersistence _persistence;

    /// <param name="lockTimeout">How long to wait for another Gallium operation holding the host lock; default 30 s.</param>
    public PlanRunner(HostContext host, TimeSpan? lockTimeout = null)
    {
        _host = host ?? throw new ArgumentNullException(nameof(host));
        _lockTimeout = lockTimeout ?? DefaultLockTimeout;
        _binder = new DriverBinder(host);
        _persistence = new PassthroughPersistence(host.Paths);
    }

    /// <summary>Runs the plan. A no-op plan returns at once. <paramref name="verbose"/> hears every kernel step
    /// ("write vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override"), file change and check.</summary>
    public void Run(PassthroughPlan plan, Action<string>? verbose = null)
    {
        ArgumentNullException.ThrowIfNull(plan);
        var narrate = verbose ?? (_ => { });
        if (plan.IsNoOp)
        {
            narrate($"IOMMU group {plan.IommuGroup.Id}: nothing to do");
            return;
        }
        if (!_host.Identity.IsRoot) throw new RootRequiredException(plan.Address.ToString());

        using var hostLock = HostLock.Acquire(_host.Paths, _lockTimeout, narrate);
        if (plan.NeedsVfioPci) EnsureVfioPci(plan, narrate);

        int group = plan.IommuGroup.Id;
        var start = PassthroughPlanner.ReadMembers(_host, group);
        var changed = Differences(plan.Before, start);
        if (changed.Count > 0) throw new IommuGroupChangedException(group, changed);
        plan.Revalidate();

        bool startNode = GroupNodeExists(group);
        var startFiles = plan.Steps.Select(s => s.PersistedPath).OfType<string>().Distinct()
            .ToDictionary(p => p, p => _persistence.ReadFile(p), StringComparer.Ordinal);

        for (int i = 0; i < plan.Steps.Count; i++)
        {
            var step = plan.Steps[i];
            narrate($"step {i + 1}/{plan.Steps.Count}: {step.Description}");
            try
            {
                step.Do(narrate);
            }
            catch (Exception failure) when (failure is GalliumException or IOException or UnauthorizedAccessException)
            {
                throw RollBack(plan, i, failure, start, startNode, startFiles, narrate);
            }
        }
    }

    private void EnsureVfioPci(PassthroughPlan plan, Action<string> narrate)
    {
        if (_binder.DriverLoaded(DriverBinder.VfioPci)) return;
        // Load first: an override naming a driver that is not loaded leaves the device driverless (REFERENCE §4.6, Appendix A.4).
        narrate("modprobe vfio-pci");
        string? reason = _host.Modules.Load(DriverBinder.VfioPci);
        if (reason is not null) throw new VfioPciUnavailableException(reason, plan.Address.ToString());
        if (!_binder.DriverLoaded(DriverBinder.VfioPci))
            throw new VfioPciUnavailableException(
                $"modprobe vfio-pci succeeded but {_host.Sysfs.Root.TrimEnd('/')}/{DriverBinder.DriverPath(DriverBinder.VfioPci)} did not appear.",
                plan.Address.ToString());
    }

    private GalliumException RollBack(PassthroughPlan plan, int failedIndex, Exception failure, IReadOnlyList<MemberState> start, bool startNode,
        IReadOnlyDictionary<string, string?> startFiles, Action<string> narrate)
    {
        var step = plan.Steps[failedIndex];
        narrate($"step {failedIndex + 1} failed ({failure.Message}); undoing {failedIndex} step(s) in reverse order");
        var failedUndos = new List<string>();
        for (int j = failedIndex - 1; j >= 0; j--)
        {
            narrate($"undo step {j + 1}: {plan.Steps[j].Description}");
            try { plan.Steps[j].Undo(narrate); }
            catch (Exception e) when (e is GalliumException or IOException or UnauthorizedAccessException)
            {
                // Keep going: each later undo still brings its own part back, and the re-read below says what is left.
                failedUndos.Add($"undoing '{plan.Steps[j].Description}' failed: {e.Message}");
                narrate(failedUndos[^1]);
            }
        }

        var leftovers = new List<string>();
        leftovers.AddRange(Differences(start, PassthroughPlanner.ReadMembers(_host, plan.IommuGroup.Id)));
        bool node = GroupNodeExists(plan.IommuGroup.Id);
        if (node != startNode) leftovers.Add($"/dev/vfio/{plan.IommuGroup.Id} {(node ? "exists" : "is gone")} (it {(startNode ? "existed" : "did not exist")})");
        foreach (var (path, content) in startFiles)
        {
            string? now = _persistence.ReadFile(path);
            if (now != content) leftovers.Add(content is null ? $"{path} exists (it did not)" : now is null ? $"{path} is missing" : $"{path} has other content");
        }
        narrate(leftovers.Count == 0 && failedUndos.Count == 0
            ? "rolled back: the host is as it began"
            : $"rollback incomplete: {string.Join("; ", leftovers.Concat(failedUndos))}");

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
