using System.Runtime.Versioning;
using Gallium.Pci.Host;
using Gallium.Pci.Passthrough;
using Gallium.Pci.Testing;
using Xunit.Abstractions;

namespace Gallium.Pci.Tests.Passthrough;

/// <summary>Interruption is a fault like any other (issue 11). Every plan kind is stopped at every narration point (the
/// places a cmdlet's WriteVerbose/WriteProgress can throw PipelineStoppedException), and its process is "killed" at every
/// narration point and after every kernel write: a stop ends with the host exactly as it began (or, during the last step,
/// exactly as the change leaves it) and says which; a kill leaves an unfinished-change record that the next change repairs
/// back to the start, and until then the group shows Interrupted and the boot would apply its start state.</summary>
[SupportedOSPlatform("linux")]
public sealed class InterruptionTests(ITestOutputHelper output)
{
    public static TheoryData<string, string> Plans => PassthroughRollbackTests.Plans;

    /// <summary>What a test's narration callback throws when the pipeline "stops" (PipelineStoppedException stands in).</summary>
    private sealed class StopSignal() : Exception("the pipeline is stopping");

    private static PassthroughPlan Plan(SimHost host, string kind, string address) =>
        kind == "enable" ? host.Planner.PlanEnable(PciAddress.Parse(address)) : host.Planner.PlanDisable(PciAddress.Parse(address));

    /// <summary>A host in the state the plan starts from.</summary>
    private static SimHost Start(string kind, string address)
    {
        var host = new SimHost();
        if (kind == "disable") host.Enable(address);
        return host;
    }

    /// <summary>The number of narration calls of a clean run, and the state it ends in (kernel, files relative to the state root).</summary>
    private static (int Narrations, KernelSnapshot Kernel, IReadOnlyList<string> Files) CleanRun(string kind, string address)
    {
        using var host = Start(kind, address);
        int n = 0;
        host.Runner.Run(Plan(host, kind, address), _ => n++);
        return (n, host.Kernel.Snapshot(), RelativeFiles(host));
    }

    /// <summary>Every persisted file and directory with its mode and content, the host's own state root written as
    /// &lt;state&gt; in names and contents (the script and rules name their paths), so two hosts compare.</summary>
    private static IReadOnlyList<string> RelativeFiles(SimHost host)
    {
        string root = host.Kernel.StateRoot;
        var paths = host.Context.Paths;
        var result = new List<string>();
        foreach (string dir in new[] { paths.ConfigDirectory, paths.UdevRulesDirectory, paths.LibexecDirectory })
        {
            if (!Directory.Exists(dir)) continue;
            foreach (string f in Directory.EnumerateFileSystemEntries(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            {
                string mode = Convert.ToString((int)File.GetUnixFileMode(f), 8);
                string name = f.Replace(root, "<state>", StringComparison.Ordinal);
                result.Add(Directory.Exists(f) ? $"{name}/ {mode}" : $"{name} {mode} {File.ReadAllText(f).Replace(root, "<state>", StringComparison.Ordinal)}");
            }
        }
        return result;
    }

    [Theory]
    [MemberData(nameof(Plans))]
    public void A_stop_at_any_narration_point_rolls_back_exactly_or_finishes_and_says_which(string kind, string address)
    {
        var (narrations, endKernel, endFiles) = CleanRun(kind, address);
        Assert.True(narrations >= 5, $"{kind} {address}: only {narrations} narration points");
        int rolledBack = 0, completed = 0, untouched = 0;
        SimHost? host = null;
        try
        {
        for (int i = 1; i <= narrations; i++)
        {
            host ??= Start(kind, address);  // a stop that rolled back leaves the host at its start: the next point reuses it
            var before = host.Kernel.Snapshot();
            var files = RelativeFiles(host);
            int calls = 0;
            var signal = new StopSignal();
            var plan = Plan(host, kind, address);

            var e = Assert.Throws<PassthroughInterruptedException>(() => host.Runner.Run(plan, _ => { if (++calls == i) throw signal; }));

            Assert.Same(signal, e.Cause);  // the stop itself is what the cmdlet rethrows: it still wins
            Assert.Equal("PciPassthroughInterrupted", e.ErrorId);
            Assert.Contains($"IOMMU group {plan.IommuGroup.Id}", e.Message);
            Assert.False(File.Exists(new PendingChanges(host.Persistence).PathFor(plan.IommuGroup.Id)), $"stop at {i}: the record of the change was left behind");
            var after = host.Kernel.Snapshot();
            switch (e.How)
            {
                case PassthroughInterruptedException.Ending.Completed:
                    completed++;
                    Assert.False(e.RolledBack);
                    Assert.True(endKernel == after, $"stop at {i} completed, but: {string.Join("; ", endKernel.Differences(after))}");
                    Assert.Equal(string.Join("\n", endFiles), string.Join("\n", RelativeFiles(host)));
                    host.Dispose();
                    host = null;
                    break;
                case PassthroughInterruptedException.Ending.RolledBack or PassthroughInterruptedException.Ending.NothingChanged:
                    if (e.How == PassthroughInterruptedException.Ending.RolledBack) rolledBack++; else untouched++;
                    Assert.True(e.RolledBack);
                    Assert.True(before == after, $"{kind} {address}, stop at narration {i}: {string.Join("; ", before.Differences(after))}");
                    Assert.Equal(string.Join("\n", files), string.Join("\n", RelativeFiles(host)));
                    Assert.Contains(e.How == PassthroughInterruptedException.Ending.RolledBack ? "was rolled back" : "before", e.Message);
                    break;
                default:
                    Assert.Fail($"stop at {i}: the rollback was incomplete: {e.Message}");
                    break;
            }
        }
        }
        finally { host?.Dispose(); }
        output.WriteLine($"{kind} {address}: {narrations} stop points: {untouched} before any change, {rolledBack} rolled back, {completed} completed");
        Assert.True(rolledBack > 0 && completed > 0, "the loop must reach both the middle and the last step");
    }

    [Theory]
    [InlineData("enable", StandardHost.Gpu)]
    [InlineData("disable", StandardHost.Gpu)]
    public void StopProcessing_at_any_narration_point_is_a_stop_request_too(string kind, string address)
    {
        var (narrations, endKernel, _) = CleanRun(kind, address);
        SimHost? host = null;
        try
        {
            for (int i = 1; i <= narrations; i++)
            {
                host ??= Start(kind, address);  // reused while each stop leaves it at its start
                var before = host.Kernel.Snapshot();
                using var cts = new CancellationTokenSource();
                int calls = 0;
                var h = host;
                var e = Assert.Throws<PassthroughInterruptedException>(() =>
                    h.Runner.Run(Plan(h, kind, address), _ => { if (++calls == i) cts.Cancel(); }, cts.Token));
                Assert.IsType<OperationCanceledException>(e.Cause);
                var after = host.Kernel.Snapshot();
                if (e.How == PassthroughInterruptedException.Ending.Completed)
                {
                    Assert.True(endKernel == after, $"cancel at {i} completed: {string.Join("; ", endKernel.Differences(after))}");
                    host.Dispose();
                    host = null;
                }
                else Assert.True(before == after, $"cancel at {i}: {string.Join("; ", before.Differences(after))}");
            }
        }
        finally { host?.Dispose(); }
    }

    /// <summary>The process dies at narration point i (before the write that narration announces) — or right after kernel
    /// write k — with no undo. The next change repairs the group back to its start.</summary>
    [Theory]
    [MemberData(nameof(Plans))]
    public void A_process_killed_at_any_point_leaves_a_trace_the_next_change_repairs(string kind, string address)
    {
        var (narrations, endKernel, endFiles) = CleanRun(kind, address);
        int traces = 0;
        SimHost? host = null;
        try
        {
            // A repaired host is back at its start, so the next point reuses it; one killed after its change completed is not.
            for (int i = 1; i <= narrations; i++)
            {
                host ??= Start(kind, address);
                int calls = 0;
                var h = host;
                var (trace, atStart) = KillAndRepair(h, kind, address, endKernel, endFiles, $"narration {i}",
                    plan => h.Runner.Run(plan, _ => { if (++calls == i) throw new SimulatedProcessDeathException(); }));
                traces += trace;
                if (!atStart) { host.Dispose(); host = null; }
            }
        }
        finally { host?.Dispose(); }
        int writes;
        {
            using var probe = Start(kind, address);
            probe.Kernel.ResetCounters();
            probe.Runner.Run(Plan(probe, kind, address));
            writes = (int)probe.Kernel.WriteCount;
        }
        try
        {
            for (int k = 1; k <= writes; k++)
            {
                host ??= Start(kind, address);
                host.Kernel.DieAfterWrite(k);
                var h = host;
                var (trace, atStart) = KillAndRepair(h, kind, address, endKernel, endFiles, $"kernel write {k}", plan => h.Runner.Run(plan));
                traces += trace;
                if (!atStart) { host.Dispose(); host = null; }
            }
        }
        finally { host?.Dispose(); }
        output.WriteLine($"{kind} {address}: killed at {narrations} narration points and after {writes} kernel writes; {traces} left a trace, all repaired");
        Assert.True(traces >= writes, "every kill after a kernel write must leave a trace");
    }

    /// <returns>Trace: 1 when the kill left an unfinished-change record (then repaired), 0 when it came before it or after
    /// it went. AtStart: whether the host is now as the plan began.</returns>
    private static (int Trace, bool AtStart) KillAndRepair(SimHost host, string kind, string address, KernelSnapshot endKernel, IReadOnlyList<string> endFiles,
        string where, Action<PassthroughPlan> run)
    {
        var before = host.Kernel.Snapshot();
        var files = RelativeFiles(host);
        var plan = Plan(host, kind, address);
        var endpoints = plan.Changes.Where(c => !c.Device.IsBridge).Select(c => c.Address).ToArray();
        Assert.Throws<SimulatedProcessDeathException>(() => run(plan));
        host.Kernel.ClearFaults();

        var pending = new PendingChanges(host.Persistence);
        if (!File.Exists(pending.PathFor(plan.IommuGroup.Id)))
        {
            // Killed before the record was written (nothing changed yet) or after it was removed (the change was complete);
            // the next change finds nothing to repair, only the debris of a write cut short.
            using (var next = HostChange.Begin(host.Context, TimeSpan.FromSeconds(10), new Interruption()))
                Assert.Empty(next.Repaired);
            var now = host.Kernel.Snapshot();
            Assert.True(now == before || now == endKernel, $"killed at {where} without a trace, but the host is half-done: {string.Join("; ", before.Differences(now))}");
            Assert.Equal(now == before ? files : endFiles, RelativeFiles(host));
            return (0, now == before);
        }

        // Until repaired: every endpoint shows Interrupted, readiness lists the change, and the boot would apply the start.
        var inventory = new DeviceInventory(host.Context);
        foreach (var a in endpoints)
        {
            var d = inventory.Read(a)!;
            Assert.Equal(PassthroughState.Interrupted, d.PassthroughState);
            Assert.Contains("interrupted", d.Problem);
        }
        var readiness = new ReadinessProbe(host.Context).Probe();
        var listed = Assert.Single(readiness.UnfinishedChanges);
        Assert.Equal(plan.IommuGroup.Id, listed.IommuGroup);
        Assert.Contains(readiness.Problems, p => p.Contains("Disable-GalliumPciPassthrough -Address", StringComparison.Ordinal));

        var warnings = new List<string>();
        using (var change = HostChange.Begin(host.Context, TimeSpan.FromSeconds(10), new Interruption(warn: warnings.Add)))
        {
            var repaired = Assert.Single(change.Repaired);
            Assert.True(repaired.WentBack, repaired.Summary);
        }
        var after = host.Kernel.Snapshot();
        Assert.True(before == after, $"{kind} {address}, killed at {where}, repaired: {string.Join("; ", before.Differences(after))}");
        Assert.Equal(files, RelativeFiles(host));
        var warning = Assert.Single(warnings);
        Assert.Contains($"IOMMU group {plan.IommuGroup.Id}", warning);
        Assert.Contains("returned it to how it was before", warning);
        Assert.False(File.Exists(pending.PathFor(plan.IommuGroup.Id)));
        return (1, true);
    }

    [Fact]
    public void When_the_start_driver_will_not_bind_again_the_repair_completes_the_change_instead()
    {
        using var host = new SimHost();
        host.Kernel.DieAfterWrite(3);  // override, override, unbind nvidia: the GPU is driverless, its audio still on snd_hda_intel
        Assert.Throws<SimulatedProcessDeathException>(() => host.Runner.Run(host.Planner.PlanEnable(PciAddress.Parse(StandardHost.Gpu))));
        host.Kernel.ClearFaults();
        host.Kernel.FailWhere("drivers/nvidia/bind", Errnos.ENODEV);  // nvidia no longer takes it

        var warnings = new List<string>();
        using (var change = HostChange.Begin(host.Context, TimeSpan.FromSeconds(10), new Interruption(warn: warnings.Add)))
            Assert.False(Assert.Single(change.Repaired).WentBack);

        Assert.Equal("vfio-pci", host.Driver(StandardHost.Gpu));
        Assert.Equal("vfio-pci", host.Driver(StandardHost.GpuAudio));
        var inventory = new DeviceInventory(host.Context);
        Assert.Equal(PassthroughState.Enabled, inventory.Read(PciAddress.Parse(StandardHost.Gpu))!.PassthroughState);
        Assert.Equal(PassthroughState.Enabled, inventory.Read(PciAddress.Parse(StandardHost.GpuAudio))!.PassthroughState);
        Assert.Contains("was completed", Assert.Single(warnings));
    }

    [Fact]
    public void A_change_that_can_be_neither_undone_nor_completed_keeps_its_record_and_stops_the_next_command()
    {
        using var host = new SimHost();
        host.Kernel.DieAfterWrite(3);
        var plan = host.Planner.PlanEnable(PciAddress.Parse(StandardHost.Gpu));
        Assert.Throws<SimulatedProcessDeathException>(() => host.Runner.Run(plan));
        host.Kernel.ClearFaults();
        host.Kernel.FailWhere("drivers/nvidia/bind", Errnos.ENODEV);
        host.Kernel.FailWhere("drivers_probe", Errnos.EIO, 1);
        host.Kernel.FailWhere("drivers_probe", Errnos.EIO, 2);

        var e = Assert.Throws<UnfinishedChangeRepairFailedException>(() => HostChange.Begin(host.Context, TimeSpan.FromSeconds(10), new Interruption()));
        Assert.True(e.IsHostLevel);
        Assert.Contains(StandardHost.Gpu, e.Message);
        Assert.True(File.Exists(new PendingChanges(host.Persistence).PathFor(plan.IommuGroup.Id)));
        // The lock was released: the next attempt (the kernel now cooperating) repairs it.
        host.Kernel.ClearFaults();
        using var change = HostChange.Begin(host.Context, TimeSpan.FromSeconds(10), new Interruption());
        Assert.Single(change.Repaired);
        Assert.Equal("nvidia", host.Driver(StandardHost.Gpu));
    }

    [Fact]
    public void An_unreadable_record_stops_the_next_change_instead_of_guessing()
    {
        using var host = new SimHost();
        var pending = new PendingChanges(host.Persistence);
        host.Persistence.WriteFile(pending.PathFor(12), "change 1\ndirection sideways\n", PassthroughPersistence.FileMode);
        var e = Assert.Throws<PendingChangeUnreadableException>(() => host.Enable(StandardHost.Gpu));
        Assert.True(e.IsHostLevel);
        Assert.Equal("nvidia", host.Driver(StandardHost.Gpu));
    }

    [Fact]
    public void The_record_round_trips_through_its_text_form()
    {
        var change = new UnfinishedChange
        {
            IommuGroup = 63,
            Direction = PassthroughDirection.Disable,
            ProcessId = 4242,
            BootId = "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            Started = new DateTimeOffset(2026, 12, 4, 19, 0, 0, TimeSpan.Zero),
            Members = [new UnfinishedMember(PciAddress.Parse("0000:41:00.0"), "vfio-pci", "vfio-pci", true, true),
                       new UnfinishedMember(PciAddress.Parse("10000:e1:00.1"), null, null, false, true)],
            AbsentDirectories = ["/etc/gallium", "/etc/gallium/pci.d"],
        };
        var back = PendingChanges.Parse(PendingChanges.Format(change), "/x");
        Assert.Equal((change.IommuGroup, change.Direction, change.ProcessId, change.BootId, change.Started),
                     (back.IommuGroup, back.Direction, back.ProcessId, back.BootId, back.Started));
        Assert.Equal(change.Members, back.Members);
        Assert.Equal(change.AbsentDirectories, back.AbsentDirectories);
        Assert.Equal("/x", back.Path);
    }
}
