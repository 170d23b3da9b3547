using System.Diagnostics;
using Gallium.Pci.Host;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;
using Gallium.Pci.Passthrough;

namespace Gallium.Pci.Assignments;

/// <summary>Timing of a VM change.</summary>
public sealed record VmChangeOptions
{
    /// <summary>How long to wait for another Gallium command holding the host lock.</summary>
    public TimeSpan LockTimeout { get; init; } = PlanRunner.DefaultLockTimeout;
    /// <summary>A define is made only from a definition read twice this far apart and found unchanged: a tool editing the VM
    /// right now (a script's burst of virsh calls, an editor's apply) is waited for instead of overwritten. Each change seen
    /// doubles the silence asked for next.</summary>
    public TimeSpan QuietPeriod { get; init; } = TimeSpan.FromMilliseconds(500);
    /// <summary>How long to keep waiting for the definition to stay unchanged before refusing (VmDefinitionBusy).</summary>
    public TimeSpan BusyTimeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>Carries out a <see cref="VmDeviceChange"/>: the one entry point of every VM edit (Add, Remove, Repair). Under the
/// host lock (<see cref="HostChange"/>, the same one Enable/Disable take, so "read assignments, check, edit" never interleaves with another Gallium
/// command) it plans the change again, which checks once more, after any prompt, that the VM is stopped, each device still
/// enabled, in the same group and in no other VM. A change that leaves the MMIO fix as it is goes through libvirt's atomic
/// per-device calls, one per hostdev or root port; a failed step, or a stop request at any step boundary, undoes the earlier
/// ones in reverse order. A change that moves the fix, which has no such call, is one define holding the fix and the hostdevs
/// together, made only from a definition that stayed unchanged for a moment (REFERENCE §8.3).</summary>
public sealed class VmDeviceRunner(ILibvirt libvirt, VmDevicePlanner planner, HostContext host, Func<HostCpu> hostCpu, VmChangeOptions? options = null)
{
    private readonly VmChangeOptions _options = options ?? new VmChangeOptions();
    private readonly Func<HostCpu> _hostCpu = hostCpu;
    private readonly VmDevicePlanner _planner = planner;

    /// <summary>Runs the change the user confirmed; returns the change as planned again under the lock (what was done, and
    /// any device refused only now).</summary>
    /// <exception cref="VmChangeInterruptedException">A stop request: rolled back (or, after the last step, finished).</exception>
    /// <exception cref="VmDeviceChangeFailedException">A libvirt step failed; the earlier ones were undone.</exception>
    public VmDeviceChange Run(VmDeviceChange confirmed, Interruption interruption)
    {
        ArgumentNullException.ThrowIfNull(confirmed);
        ArgumentNullException.ThrowIfNull(interruption);
        string action = confirmed.Action.ToString();
        // The one way in (issue 11): the host lock, and before anything else the repair of a host change a killed command left.
        using var hostChange = HostChange.Begin(host, _options.LockTimeout, interruption);
        if (interruption.StopRequested) throw new VmChangeInterruptedException(confirmed.VmName, action, interruption.Cause, true, []);

        var change = _planner.Plan(confirmed.Request).ThrowIfRefused();
        CheckSameGroups(confirmed, change);
        interruption.Say($"re-checked under the lock: VM '{change.VmName}' is {(change.Action == VmDeviceAction.Repair ? "defined" : "shut off")}"
            + (change.Groups.Count == 0 ? "" : $", {string.Join(", ", change.Groups.Select(g => g.Requested))} "
                + (change.Action == VmDeviceAction.Add ? "still enabled and in no other VM" : "still held"))
            + (change.Refusals.Count == 0 ? "" : $"; left out: {string.Join(", ", change.Refusals.Select(r => r.Target))}"));
        if (change.IsNoOp)
        {
            interruption.Say($"VM '{change.VmName}': nothing to change");
            if (interruption.StopRequested) throw new VmChangeInterruptedException(change.VmName, action, interruption.Cause, false, []);
            return change;
        }

        var steps = Steps(change, interruption);
        var done = new Stack<Step>();
        for (int i = 0; i < steps.Count; i++)
        {
            if (interruption.StopRequested) throw RollBack(change, done, interruption, null);
            var step = steps[i];
            interruption.Say($"step {i + 1}/{steps.Count}: {step.Description}");
            try
            {
                step.Do();
            }
            catch (StoppedBeforeStepException)
            {
                throw RollBack(change, done, interruption, null);
            }
            catch (GalliumException failure) when (failure is not ChangeInterruptedException)
            {
                throw RollBack(change, done, interruption, (step, failure));
            }
            done.Push(step);
        }
        if (interruption.StopRequested) throw new VmChangeInterruptedException(change.VmName, action, interruption.Cause, false, []);
        return change;
    }

    /// <summary>A group named at planning must still have the same functions now: a changed group is planned again, not edited.</summary>
    private static void CheckSameGroups(VmDeviceChange confirmed, VmDeviceChange now)
    {
        if (confirmed.Action != VmDeviceAction.Add) return;
        foreach (var before in confirmed.Groups)
        {
            var after = now.Groups.FirstOrDefault(g => g.Requested == before.Requested);
            if (after is null) continue;   // refused now (assigned meanwhile, no longer enabled): reported with the refusals
            if (after.IommuGroup != before.IommuGroup || !after.Functions.Order().SequenceEqual(before.Functions.Order()))
                throw new IommuGroupChangedException(before.IommuGroup ?? -1,
                    [$"{before.Requested} was in group {before.IommuGroup} with {string.Join(", ", before.Functions)}; now group {after.IommuGroup} with {string.Join(", ", after.Functions)}"]);
        }
    }

    private GalliumException RollBack(VmDeviceChange change, Stack<Step> done, Interruption interruption, (Step Step, GalliumException Failure)? failed)
    {
        var leftovers = new List<string>();
        if (failed is { } f) interruption.Say($"libvirt: {f.Step.Description} failed ({f.Failure.Message}); undoing {done.Count} step(s)");
        while (done.Count > 0)
        {
            var step = done.Pop();
            interruption.Say($"undo: {step.Description}");
            try { step.Undo(); }
            catch (GalliumException e) { leftovers.Add($"{step.Description} ({e.Message})"); }
        }
        string action = change.Action.ToString();
        if (failed is null)
            return new VmChangeInterruptedException(change.VmName, action, interruption.Cause, leftovers.Count == 0, leftovers);
        if (failed.Value.Failure is VmDefinitionBusyException busy && leftovers.Count == 0) return busy;
        return new VmDeviceChangeFailedException(change.VmName, failed.Value.Step.Description, failed.Value.Failure, leftovers.Count == 0, leftovers);
    }

    // ---- steps ---------------------------------------------------------------------------------------------------------

    private abstract class Step(string description)
    {
        public string Description { get; } = description;
        public abstract void Do();
        public abstract void Undo();
    }

    private sealed class DeviceStep(ILibvirt libvirt, string vmName, VmDeviceEdit edit) : Step(edit.Description)
    {
        public override void Do()
        {
            if (edit.IsAttach) libvirt.AttachDeviceToConfig(vmName, edit.Xml);
            else libvirt.DetachDeviceFromConfig(vmName, edit.Xml);
        }

        public override void Undo()
        {
            if (edit.IsAttach) libvirt.DetachDeviceFromConfig(vmName, edit.Xml);
            else libvirt.AttachDeviceToConfig(vmName, edit.Xml);
        }
    }

    /// <summary>A change that moves the MMIO fix, made as ONE define (libvirt has no per-element call for &lt;cpu&gt; or
    /// &lt;qemu:commandline&gt;): the fix and the change's hostdevs together, planned again from the definition as it is at that
    /// moment and defined only if it stayed so. Being one libvirt operation, it is never half made, even when killed.</summary>
    private sealed class DefineStep(VmDeviceRunner runner, VmDeviceChange change, Interruption interruption)
        : Step($"define VM '{change.VmName}' with: {string.Join("; ", change.Lines)}")
    {
        public override void Do() => runner.DefineWhenQuiet(change.VmName, current =>
        {
            var edits = runner._planner.EditsFor(change, current);
            var t = MmioTransition.Compute(current, xml => VmDeviceChange.Project(xml, edits), change.DevicesAfter, runner._hostCpu);
            return t.Change == MmioFixChange.None && edits.Count == 0 ? null : t.TargetXml;
        }, interruption);

        // The only step of its change: nothing after it can fail, so it is never undone.
        public override void Undo() => throw new InvalidOperationException("A define step is the last step of its change.");
    }

    private sealed class StoppedBeforeStepException() : Exception("stopped while waiting to define");

    private List<Step> Steps(VmDeviceChange change, Interruption interruption) => change.ChangesMmio
        ? [new DefineStep(this, change, interruption)]
        : change.Edits.Select(e => (Step)new DeviceStep(libvirt, change.VmName, e)).ToList();

    /// <summary>Defines <paramref name="targetFor"/>(the definition) once two reads <see cref="VmChangeOptions.QuietPeriod"/>
    /// apart are equal; planned again from each new text. Returns the definition it replaced, or null when nothing needed
    /// defining. Another tool's edit that lands between the second read and libvirt's define is the one it cannot see: libvirt
    /// 9.0 offers no compare-and-swap (REFERENCE §8.3).</summary>
    private string? DefineWhenQuiet(string vmName, Func<string, string?> targetFor, Interruption interruption)
    {
        var clock = Stopwatch.StartNew();
        var quiet = _options.QuietPeriod;
        while (true)
        {
            string current = libvirt.GetDefinition(vmName);
            var readAt = clock.Elapsed;
            if (targetFor(current) is not { } target)
            {
                interruption.Say($"libvirt: VM '{vmName}' already is as this change leaves it");
                return null;
            }
            interruption.Say($"libvirt: read the definition of VM '{vmName}'; define it if it stays unchanged for {quiet.TotalSeconds:0.###} s");
            while (clock.Elapsed - readAt < quiet)
            {
                if (interruption.StopRequested) throw new StoppedBeforeStepException();
                Thread.Sleep(TimeSpan.FromMilliseconds(Math.Min(25, Math.Max(1, (quiet - (clock.Elapsed - readAt)).TotalMilliseconds))));
            }
            // Nothing between this read and the define but a string compare: the window libvirt leaves open is its own parse.
            if (libvirt.GetDefinition(vmName) == current)
            {
                interruption.Say($"libvirt: define VM '{vmName}' (its definition as read, with secrets, plus this change only)");
                libvirt.DefineDomain(target);
                return current;
            }
            if (clock.Elapsed >= _options.BusyTimeout) throw new VmDefinitionBusyException(vmName, clock.Elapsed);
            // A tool that was editing a moment ago is likely still at it: wait for a longer silence before the next try.
            quiet = TimeSpan.FromTicks(Math.Min(quiet.Ticks * 2, Math.Max(_options.QuietPeriod.Ticks, _options.BusyTimeout.Ticks / 4)));
            interruption.Say($"libvirt: the definition of VM '{vmName}' changed meanwhile (another tool is editing it); reading it again");
        }
    }
}
