using System.Runtime.Versioning;
using Gallium.Pci.Host;
using Gallium.Pci.Passthrough;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Passthrough;

/// <summary>Enable and Disable against the simulated kernel: the end state, the exact kernel writes, persistence, the lock.</summary>
[SupportedOSPlatform("linux")]
public sealed class PassthroughRunTests
{
    private static PciAddress A(string s) => PciAddress.Parse(s);

    private static string[] Writes(SimHost host) =>
        host.Kernel.Writes.Select(w => $"{w.Path} <- {w.Value.Replace("\n", "\\n")}{(w.Succeeded ? "" : " => " + Errnos.Name(w.Errno))}").ToArray();

    [Fact]
    public void Enable_then_disable_gpu_and_audio_moves_the_group_and_back_exactly()
    {
        using var host = new SimHost();
        var start = host.Kernel.Snapshot();
        int group = host.Kernel.GroupOf(StandardHost.Gpu)!.Value;

        host.Enable(StandardHost.Gpu);

        Assert.Equal(
        [
            "bus/pci/devices/0000:01:00.0/driver_override <- vfio-pci",
            "bus/pci/devices/0000:01:00.1/driver_override <- vfio-pci",
            "bus/pci/drivers/nvidia/unbind <- 0000:01:00.0",
            "bus/pci/drivers_probe <- 0000:01:00.0",
            "bus/pci/drivers/snd_hda_intel/unbind <- 0000:01:00.1",
            "bus/pci/drivers_probe <- 0000:01:00.1",
        ], Writes(host));
        foreach (var bdf in new[] { StandardHost.Gpu, StandardHost.GpuAudio })
        {
            Assert.Equal("vfio-pci", host.Kernel.DriverOf(bdf));
            Assert.Equal("vfio-pci", host.Kernel.OverrideOf(bdf));
            Assert.Equal("vfio-pci\n", File.ReadAllText(host.Persistence.RecordPath(A(bdf))));
            Assert.Equal(host.Persistence.RuleContent(A(bdf)), File.ReadAllText(host.Persistence.RulePath(A(bdf))));
        }
        Assert.Contains(group.ToString(System.Globalization.CultureInfo.InvariantCulture), host.Kernel.Snapshot().VfioNodes);
        Assert.Equal(host.Persistence.ScriptContent, File.ReadAllText(host.Persistence.ScriptPath));
        Assert.Equal((UnixFileMode)Convert.ToInt32("755", 8), File.GetUnixFileMode(host.Persistence.ScriptPath));

        host.Kernel.ResetCounters();
        host.Disable(StandardHost.GpuAudio);

        Assert.Equal(
        [
            "bus/pci/devices/0000:01:00.0/driver_override <- \\n",
            "bus/pci/devices/0000:01:00.1/driver_override <- \\n",
            "bus/pci/drivers/vfio-pci/unbind <- 0000:01:00.0",
            "bus/pci/drivers_probe <- 0000:01:00.0",
            "bus/pci/drivers/vfio-pci/unbind <- 0000:01:00.1",
            "bus/pci/drivers_probe <- 0000:01:00.1",
        ], Writes(host));
        Assert.Equal(start, host.Kernel.Snapshot());
        Assert.False(File.Exists(host.Persistence.RecordPath(A(StandardHost.Gpu))));
        Assert.False(File.Exists(host.Persistence.RulePath(A(StandardHost.GpuAudio))));
        Assert.Empty(host.Persistence.RecordedDevices());
        Assert.True(File.Exists(host.Persistence.ScriptPath));  // other records may still need it
    }

    [Fact]
    public void Enable_and_disable_of_a_group_with_a_bridge_leave_the_bridge_alone()
    {
        using var host = new SimHost();
        var start = host.Kernel.Snapshot();
        host.Enable(StandardHost.LegacyAudio);
        Assert.Equal("vfio-pci", host.Driver(StandardHost.LegacyAudio));
        Assert.Equal("vfio-pci", host.Driver(StandardHost.LegacyNic));
        Assert.Equal(start[StandardHost.PciBridge], host.Kernel.Snapshot()[StandardHost.PciBridge]);
        Assert.DoesNotContain(host.Kernel.Writes, w => w.Path.Contains(StandardHost.PciBridge, StringComparison.Ordinal) || w.Value.Contains(StandardHost.PciBridge, StringComparison.Ordinal));
        host.Disable(StandardHost.LegacyNic);
        Assert.Equal(start, host.Kernel.Snapshot());
    }

    [Fact]
    public void A_root_port_in_the_group_stays_on_pcieport_through_enable_and_disable()
    {
        using var host = new SimHost(build: dir => HostTopology.Create()
            .RootComplex("0000:00:00.0", 0x8086, 0x3e30, 0x060000, null)
            .RootPort("0000:00:01.0", 0x01).Acs(false)
            .Endpoint("0000:01:00.0", 0x10de, 0x2684, 0x030000, "nvidia").BootVga(false)
            .Build(dir));
        var start = host.Kernel.Snapshot();
        Assert.Equal(host.Kernel.GroupOf("0000:00:01.0"), host.Kernel.GroupOf("0000:01:00.0"));
        host.Enable("0000:01:00.0");
        Assert.Equal("pcieport", host.Driver("0000:00:01.0"));
        Assert.Equal("vfio-pci", host.Driver("0000:01:00.0"));
        host.Disable("0000:01:00.0");
        Assert.Equal(start, host.Kernel.Snapshot());
    }

    [Fact]
    public void Enable_and_disable_of_a_single_nic()
    {
        using var host = new SimHost();
        var start = host.Kernel.Snapshot();
        var plan = host.Enable(StandardHost.FreeNic);
        Assert.Equal("0000:05:00.0", Assert.Single(plan.Changes).Address.ToString());
        Assert.Equal("vfio-pci", host.Driver(StandardHost.FreeNic));
        Assert.Equal([A(StandardHost.FreeNic)], host.Persistence.RecordedDevices());
        host.Disable(StandardHost.FreeNic);
        Assert.Equal(start, host.Kernel.Snapshot());
        Assert.Empty(host.Persistence.RecordedDevices());
    }

    [Fact]
    public void A_device_without_a_driver_goes_to_vfio_pci_and_back_to_none()
    {
        using var host = new SimHost();
        var start = host.Kernel.Snapshot();
        var plan = host.Enable(StandardHost.UnboundDevice);
        Assert.DoesNotContain(plan.Steps, s => s.Kind == StepKind.Unbind);
        Assert.EndsWith(": no driver -> vfio-pci", Assert.Single(plan.Changes).Description);
        Assert.Equal("vfio-pci", host.Driver(StandardHost.UnboundDevice));
        host.Disable(StandardHost.UnboundDevice);
        Assert.Equal(start, host.Kernel.Snapshot());
    }

    [Fact]
    public void Enabling_an_enabled_group_again_is_a_quiet_no_op()
    {
        using var host = new SimHost();
        host.Enable(StandardHost.Gpu);
        var files = host.Files();
        host.Kernel.ResetCounters();
        host.Verbose.Clear();

        var again = host.Planner.PlanEnable(A(StandardHost.GpuAudio));
        Assert.True(again.IsNoOp);
        Assert.All(again.Changes, c => Assert.Equal(DeviceChangeKind.Stays, c.Kind));
        Assert.EndsWith(": already on vfio-pci", again.Changes[0].Description);
        host.Runner.Run(again, host.Verbose.Add);
        Assert.Equal(0, host.Kernel.WriteCount);
        Assert.Equal(files, host.Files());
        Assert.Equal(["IOMMU group " + again.IommuGroup.Id + ": nothing to do"], host.Verbose);
    }

    [Fact]
    public void A_device_on_vfio_pci_without_an_override_only_gets_the_override_and_the_records()
    {
        using var host = new SimHost();
        var timeout = TimeSpan.FromSeconds(1);
        // Bound by hand the new_id way (REFERENCE §4.3): on vfio-pci, override unset.
        host.Kernel.Write($"bus/pci/drivers/e1000e/unbind", StandardHost.FreeNic, timeout);
        host.Kernel.Write("bus/pci/drivers/vfio-pci/new_id", "8086 10d3", timeout);
        Assert.Equal("vfio-pci", host.Driver(StandardHost.FreeNic));
        host.Kernel.ResetCounters();
        var plan = host.Enable(StandardHost.FreeNic);
        Assert.Equal([StepKind.SetOverride, StepKind.Persist, StepKind.Persist, StepKind.Persist], plan.Steps.Select(s => s.Kind).ToArray());
        Assert.Equal(["bus/pci/devices/0000:05:00.0/driver_override <- vfio-pci"], Writes(host));
    }

    [Fact]
    public void Vfio_pci_is_loaded_when_it_is_not()
    {
        using var host = new SimHost(new HostOptions { VfioPciLoaded = false });
        Assert.False(host.Kernel.IsModuleLoaded("vfio_pci"));
        host.Enable(StandardHost.FreeNic);
        Assert.True(host.Kernel.IsModuleLoaded("vfio_pci"));
        Assert.Equal("vfio-pci", host.Driver(StandardHost.FreeNic));
        Assert.Contains("modprobe vfio-pci", host.Verbose);
        // Loaded before the first write: the device never sits driverless waiting for the module (REFERENCE §4.6).
        Assert.True(host.Verbose.IndexOf("modprobe vfio-pci") < host.Verbose.FindIndex(v => v.StartsWith("write ", StringComparison.Ordinal)));
    }

    [Fact]
    public void When_vfio_pci_cannot_be_loaded_nothing_changes()
    {
        using var host = new SimHost(new HostOptions { VfioPciLoaded = false, VfioPciLoadFailure = "administratively prohibited" });
        var start = host.Kernel.Snapshot();
        var plan = host.Planner.PlanEnable(A(StandardHost.Gpu));
        var e = Assert.Throws<VfioPciUnavailableException>(() => host.Runner.Run(plan));
        Assert.Equal("VfioPciUnavailable", e.ErrorId);
        Assert.Equal(ErrorKind.NotInstalled, e.Kind);
        Assert.Contains("administratively prohibited", e.Message);
        Assert.Equal(start, host.Kernel.Snapshot());
        Assert.Equal(0, host.Kernel.WriteCount);
        Assert.Empty(host.Files());
    }

    [Fact]
    public void Verbose_narrates_every_kernel_write_and_file_change()
    {
        using var host = new SimHost();
        host.Enable(StandardHost.FreeNic);
        string sys = host.Kernel.SysfsRoot;
        Assert.Contains($"write vfio-pci > {sys}/bus/pci/devices/0000:05:00.0/driver_override", host.Verbose);
        Assert.Contains($"write 0000:05:00.0 > {sys}/bus/pci/drivers/e1000e/unbind", host.Verbose);
        Assert.Contains($"write 0000:05:00.0 > {sys}/bus/pci/drivers_probe", host.Verbose);
        Assert.Contains($"read {sys}/bus/pci/devices/0000:05:00.0/driver -> vfio-pci", host.Verbose);
        Assert.Contains(host.Verbose, v => v.StartsWith($"write {host.Persistence.RecordPath(A(StandardHost.FreeNic))} (mode 644", StringComparison.Ordinal));
        Assert.Contains(host.Verbose, v => v.StartsWith("lock ", StringComparison.Ordinal));
        host.Verbose.Clear();
        host.Disable(StandardHost.FreeNic);
        Assert.Contains($"write '\\n' > {sys}/bus/pci/devices/0000:05:00.0/driver_override", host.Verbose);
        Assert.Contains($"remove {host.Persistence.RulePath(A(StandardHost.FreeNic))}", host.Verbose);
    }

    [Fact]
    public void A_group_that_changed_since_planning_is_refused_untouched()
    {
        using var host = new SimHost();
        var plan = host.Planner.PlanEnable(A(StandardHost.Gpu));
        host.Kernel.Write("bus/pci/drivers/snd_hda_intel/unbind", StandardHost.GpuAudio, TimeSpan.FromSeconds(1));
        var changed = host.Kernel.Snapshot();
        host.Kernel.ResetCounters();
        var e = Assert.Throws<IommuGroupChangedException>(() => host.Runner.Run(plan));
        Assert.Equal("IommuGroupChanged", e.ErrorId);
        Assert.Contains(e.Differences, d => d.StartsWith(StandardHost.GpuAudio, StringComparison.Ordinal));
        Assert.Equal(0, host.Kernel.WriteCount);
        Assert.Equal(changed, host.Kernel.Snapshot());
    }

    [Fact]
    public void A_vm_defined_between_planning_and_running_stops_a_disable()
    {
        using var host = new SimHost();
        host.Enable(StandardHost.FreeNic);
        var plan = host.Planner.PlanDisable(A(StandardHost.FreeNic));
        host.Assignments.Assign("router", StandardHost.FreeNic);
        var before = host.Kernel.Snapshot();
        var files = host.Files();
        var e = Assert.Throws<IommuGroupAssignedException>(() => host.Runner.Run(plan));
        Assert.Equal(["router"], e.Vms);
        Assert.Equal(before, host.Kernel.Snapshot());
        Assert.Equal(files, host.Files());
    }

    [Fact]
    public void Disable_of_a_device_a_vm_holds_times_out_and_rolls_back()
    {
        using var host = new SimHost();
        host.Enable(StandardHost.Gpu);
        var enabled = host.Kernel.Snapshot();
        var files = host.Files();
        host.Kernel.HoldDevice(StandardHost.Gpu);
        var plan = host.Planner.PlanDisable(A(StandardHost.Gpu));
        var e = Assert.Throws<PassthroughStepFailedException>(() => host.Runner.Run(plan, host.Verbose.Add));
        Assert.Equal("PciPassthroughStepFailed", e.ErrorId);
        Assert.Equal(ErrorKind.OperationTimeout, e.Kind);
        Assert.Equal(Errnos.ETIMEDOUT, e.Errno);
        Assert.Equal(StepKind.Unbind, e.StepKind);
        Assert.Equal(StandardHost.Gpu, e.Device?.ToString());
        Assert.True(e.RolledBack);
        Assert.Contains("ETIMEDOUT", e.Message);
        Assert.Contains("unbind 0000:01:00.0 from vfio-pci", e.Message);
        Assert.Equal(enabled, host.Kernel.Snapshot());
        Assert.Equal(files, host.Files());
    }

    [Fact]
    public void A_device_that_comes_back_on_the_wrong_driver_rolls_the_group_back()
    {
        using var host = new SimHost();
        var start = host.Kernel.Snapshot();
        host.Kernel.WrongDriverOnProbe(StandardHost.GpuAudio, "snd_hda_intel");
        var e = Assert.Throws<PassthroughStepFailedException>(() => host.Enable(StandardHost.Gpu));
        Assert.Equal(StepKind.Verify, e.StepKind);
        Assert.Equal(StandardHost.GpuAudio, e.Device?.ToString());
        Assert.Null(e.Errno);
        Assert.Equal(ErrorKind.DeviceError, e.Kind);
        Assert.Contains("came back on snd_hda_intel", e.Message);
        Assert.Equal(start, host.Kernel.Snapshot());
        Assert.Empty(host.Files());
    }

    [Fact]
    public void An_undo_that_fails_is_reported_with_what_is_left_half_done()
    {
        using var host = new SimHost();
        // Write 3 (unbind the GPU from nvidia) fails; write 4, the first undo (the audio's override back to (null)), fails too.
        host.Kernel.FailWrite(3, Errnos.EBUSY);
        host.Kernel.FailWrite(4, Errnos.EIO);
        var e = Assert.Throws<PassthroughRollbackFailedException>(() => host.Enable(StandardHost.Gpu));
        Assert.Equal("PciPassthroughRollbackFailed", e.ErrorId);
        Assert.False(e.RolledBack);
        Assert.Equal(Errnos.EBUSY, e.Errno);
        Assert.Equal(StandardHost.Gpu, e.Device?.ToString());
        Assert.Contains(e.FailedUndos, u => u.Contains("set driver_override of 0000:01:00.1", StringComparison.Ordinal) && u.Contains("EIO", StringComparison.Ordinal));
        Assert.Equal(["0000:01:00.1 has driver snd_hda_intel, override vfio-pci (was snd_hda_intel, (null))"], e.Leftovers);
        Assert.Contains("0000:01:00.1 has driver snd_hda_intel, override vfio-pci", e.Message);
        // The rest was undone: the GPU's override is back.
        Assert.Null(host.Kernel.OverrideOf(StandardHost.Gpu));
    }

    [Fact]
    public void A_second_runner_waits_for_the_host_lock_or_times_out_naming_the_holder()
    {
        using var host = new SimHost();
        var gpuPlan = host.Planner.PlanEnable(A(StandardHost.Gpu));
        var nicPlan = host.Planner.PlanEnable(A(StandardHost.FreeNic));
        using var inside = new ManualResetEventSlim();
        using var proceed = new ManualResetEventSlim();
        Exception? firstFailure = null;
        var first = new Thread(() =>
        {
            try
            {
                host.Runner.Run(gpuPlan, line =>
                {
                    if (line.StartsWith("step 1/", StringComparison.Ordinal)) { inside.Set(); proceed.Wait(); }
                });
            }
            catch (Exception x) { firstFailure = x; inside.Set(); }
        });
        first.Start();
        inside.Wait();  // the first runner holds the lock and is about to write

        var impatient = new PlanRunner(host.Context, TimeSpan.FromMilliseconds(100));
        var e = Assert.Throws<HostLockTimeoutException>(() => impatient.Run(nicPlan));
        Assert.Equal(ErrorKind.ResourceBusy, e.Kind);
        Assert.Equal(Environment.ProcessId, e.HolderPid);
        Assert.Equal(0, host.Kernel.WriteCount);

        Exception? secondFailure = null;
        using var waiting = new ManualResetEventSlim();
        var second = new Thread(() =>
        {
            try { new PlanRunner(host.Context, TimeSpan.FromMinutes(2)).Run(nicPlan, l => { if (l.StartsWith("lock ", StringComparison.Ordinal)) waiting.Set(); }); }
            catch (Exception x) { secondFailure = x; }
        });
        second.Start();
        waiting.Wait();
        proceed.Set();
        first.Join();
        second.Join();
        Assert.Null(firstFailure);
        Assert.Null(secondFailure);
        // Serialised: every write of the GPU plan comes before any write of the NIC plan.
        var writes = host.Kernel.Writes.ToArray();
        int lastGpu = Array.FindLastIndex(writes, w => w.Path.Contains("0000:01:00", StringComparison.Ordinal) || w.Value.Contains("0000:01:00", StringComparison.Ordinal));
        int firstNic = Array.FindIndex(writes, w => w.Path.Contains(StandardHost.FreeNic, StringComparison.Ordinal) || w.Value.Contains(StandardHost.FreeNic, StringComparison.Ordinal));
        Assert.True(lastGpu >= 0 && firstNic > lastGpu, string.Join("\n", writes.Select(w => w.ToString())));
        Assert.Equal("vfio-pci", host.Driver(StandardHost.Gpu));
        Assert.Equal("vfio-pci", host.Driver(StandardHost.FreeNic));
    }

    [Fact]
    public void A_lock_directory_that_is_a_symbolic_link_stops_the_run_before_any_write()
    {
        using var host = new SimHost();
        var plan = host.Planner.PlanEnable(A(StandardHost.FreeNic));
        string elsewhere = Path.Combine(host.Kernel.RootDirectory, "elsewhere");
        Directory.CreateDirectory(elsewhere);
        Directory.CreateDirectory(Path.GetDirectoryName(host.Context.Paths.LockDirectory)!);
        File.CreateSymbolicLink(host.Context.Paths.LockDirectory, elsewhere);
        Assert.Throws<HostPathUnsafeException>(() => host.Runner.Run(plan));
        Assert.Equal(0, host.Kernel.WriteCount);
    }
}
