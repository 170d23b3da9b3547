using System.Runtime.Versioning;
using Gallium.Pci.Passthrough;
using Gallium.Pci.Testing;
using Xunit.Abstractions;

namespace Gallium.Pci.Tests.Passthrough;

/// <summary>Atomicity: for every plan kind, a failure injected at each kernel write k = 1..N (and at each persisted file)
/// leaves the host exactly as it began, and the error names the device, the step and the errno.</summary>
[SupportedOSPlatform("linux")]
public sealed class PassthroughRollbackTests(ITestOutputHelper output)
{
    private static readonly int[] Errnos_ = [Errnos.EBUSY, Errnos.ENODEV, Errnos.EINVAL, Errnos.ETIMEDOUT];

    public static TheoryData<string, string> Plans => new()
    {
        { "enable", StandardHost.Gpu },           // GPU + HDMI audio
        { "enable", StandardHost.LegacyAudio },   // PCIe-to-PCI bridge + two endpoints
        { "enable", StandardHost.FreeNic },       // one NIC
        { "enable", StandardHost.UnboundDevice }, // no driver to start with
        { "enable", StandardHost.SriovVf1 },      // an SR-IOV VF
        { "disable", StandardHost.Gpu },
        { "disable", StandardHost.LegacyNic },
        { "disable", StandardHost.FreeNic },
        { "disable", StandardHost.UnboundDevice },
        { "disable", StandardHost.SriovVf1 },
    };

    private static PassthroughPlan Plan(SimHost host, string kind, string address) =>
        kind == "enable" ? host.Planner.PlanEnable(PciAddress.Parse(address)) : host.Planner.PlanDisable(PciAddress.Parse(address));

    /// <summary>One host per plan kind: a rolled-back run leaves it exactly as it began (asserted each time), so write k+1
    /// is tried on the same starting state. k grows until the run no longer reaches write k, i.e. past the last write.</summary>
    [Theory]
    [MemberData(nameof(Plans))]
    public void A_failure_at_any_kernel_write_is_rolled_back_exactly(string kind, string address)
    {
        using var host = new SimHost();
        if (kind == "disable") host.Enable(address);  // what Disable undoes
        var before = host.Kernel.Snapshot();
        var files = host.Files();

        int k = 1;
        for (; ; k++)
        {
            host.Kernel.ClearFaults();
            host.Kernel.ResetCounters();
            var plan = Plan(host, kind, address);
            int errno = Errnos_[k % Errnos_.Length];
            host.Kernel.FailWrite(k, errno);
            PassthroughStepFailedException e;
            try
            {
                host.Runner.Run(plan);
                break;  // fewer than k writes: every write has had its failure
            }
            catch (PassthroughStepFailedException x) { e = x; }

            var after = host.Kernel.Snapshot();
            Assert.True(before == after, $"{kind} {address}, write {k} failed: {string.Join("; ", before.Differences(after))}");
            Assert.Equal(files, host.Files());
            var failed = Assert.Single(host.Kernel.Writes, w => !w.Succeeded);
            Assert.Equal(k, host.Kernel.Writes.ToList().IndexOf(failed) + 1);
            Assert.Equal(errno, e.Errno);
            Assert.True(e.RolledBack);
            Assert.Equal(ExpectedKind(failed.Path, kind), e.StepKind);
            string device = failed.Path.Contains("/devices/", StringComparison.Ordinal) ? failed.Path.Split('/')[3] : failed.Value.TrimEnd('\n');
            Assert.Equal(device, e.Device?.ToString());
            Assert.Contains(device, e.Message);
            Assert.Contains(e.Step.Description, e.Message);
            Assert.Contains(Errnos.Name(errno), e.Message);
        }
        int n = k - 1;
        output.WriteLine($"{kind} {address}: a failure at each of {n} kernel writes was rolled back");
        Assert.Equal(n, (int)host.Kernel.WriteCount);  // the successful run made exactly n writes
        Assert.True(n >= 2, $"{kind} {address}: only {n} writes");
        Assert.NotEqual(before, host.Kernel.Snapshot());  // and it did act
    }

    private static StepKind ExpectedKind(string path, string kind) =>
        path.EndsWith("/driver_override", StringComparison.Ordinal) ? (kind == "enable" ? StepKind.SetOverride : StepKind.ClearOverride)
        : path.EndsWith("/unbind", StringComparison.Ordinal) ? StepKind.Unbind
        : path == "bus/pci/drivers_probe" ? StepKind.Probe
        : throw new InvalidOperationException($"unexpected write {path}");

    [Theory]
    [InlineData(StandardHost.Gpu)]
    [InlineData(StandardHost.LegacyAudio)]
    public void A_failure_at_any_persisted_file_undoes_the_files_and_the_kernel(string address)
    {
        using var host = new SimHost();
        int persistSteps = host.Planner.PlanEnable(PciAddress.Parse(address)).Steps.Count(s => s.Kind == StepKind.Persist);
        Assert.True(persistSteps >= 3);
        var before = host.Kernel.Snapshot();
        var files = host.Files();
        for (int i = 0; i < persistSteps; i++)
        {
            var plan = host.Planner.PlanEnable(PciAddress.Parse(address));
            var step = plan.Steps.Where(s => s.Kind == StepKind.Persist).ElementAt(i);
            // An obstacle the rename cannot replace: a non-empty directory where the file goes.
            string obstacle = Path.Combine(step.PersistedPath!, "obstacle");
            Directory.CreateDirectory(obstacle);
            var withObstacle = host.Files();

            var e = Assert.Throws<PassthroughStepFailedException>(() => host.Runner.Run(plan));

            Assert.Equal(StepKind.Persist, e.StepKind);
            Assert.Same(step, e.Step);
            Assert.Null(e.Errno);
            Assert.Contains(step.PersistedPath!, e.Message);
            var after = host.Kernel.Snapshot();
            Assert.True(before == after, string.Join("; ", before.Differences(after)));
            Assert.Equal(withObstacle, host.Files());
            Directory.Delete(step.PersistedPath!, recursive: true);
            foreach (var dir in new[] { host.Context.Paths.LibexecDirectory, host.Context.Paths.UdevRulesDirectory, host.Persistence.RecordsDirectory, host.Context.Paths.ConfigDirectory })
                if (Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
            Assert.Equal(files, host.Files());
        }
    }

    [Fact]
    public void A_failure_removing_a_record_on_disable_puts_the_group_back_on_vfio_pci()
    {
        using var host = new SimHost();
        host.Enable(StandardHost.Gpu);
        var plan = host.Planner.PlanDisable(PciAddress.Parse(StandardHost.Gpu));
        var last = plan.Steps[^1];
        Assert.Equal(StepKind.RemovePersisted, last.Kind);
        // The record becomes something unlink(2) refuses: a directory.
        File.Delete(last.PersistedPath!);
        Directory.CreateDirectory(Path.Combine(last.PersistedPath!, "obstacle"));
        var before = host.Kernel.Snapshot();
        var files = host.Files();

        var e = Assert.Throws<PassthroughStepFailedException>(() => host.Runner.Run(plan));

        Assert.Same(last, e.Step);
        var after = host.Kernel.Snapshot();
        Assert.True(before == after, string.Join("; ", before.Differences(after)));
        Assert.Equal(files, host.Files());
        Assert.Equal("vfio-pci", host.Driver(StandardHost.Gpu));
    }
}
