using System.Diagnostics;
using System.Runtime.Versioning;
using Gallium.Pci.Host;
using Gallium.Pci.Passthrough;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Passthrough;

/// <summary>Issue 13: the early boot stages (systemd unit, initramfs-tools hook, dracut module), the rule that sorts before
/// 80-drivers.rules, driverctl's records, drift, and the initramfs advice, against the simulated kernel.</summary>
[SupportedOSPlatform("linux")]
public sealed class BootStagesTests
{
    private static PciAddress A(string s) => PciAddress.Parse(s);

    private static void WithBootTools(SimHost host)
    {
        var p = host.Context.Paths;
        foreach (var d in new[] { p.SystemdUnitDirectory, p.InitramfsToolsDirectory, p.DracutModulesDirectory }) Directory.CreateDirectory(d);
    }

    [Fact]
    public void Boot_files_are_installed_only_for_the_boot_tools_the_host_has()
    {
        using var host = new SimHost();
        var stages = new BootStages(host.Persistence);
        Assert.Empty(stages.Files());
        Directory.CreateDirectory(host.Context.Paths.InitramfsToolsDirectory);
        Assert.Equal([stages.InitramfsHookPath, stages.InitramfsInitTopPath], stages.Files().Select(f => f.Path));
        WithBootTools(host);
        var p = host.Context.Paths;
        Assert.Equal(
        [
            Path.Combine(p.SystemdUnitDirectory, "gallium-vfio-early.service"),
            Path.Combine(p.SystemdUnitDirectory, "sysinit.target.d", "gallium-vfio-early.conf"),
            Path.Combine(p.InitramfsToolsDirectory, "hooks", "gallium-vfio"),
            Path.Combine(p.InitramfsToolsDirectory, "scripts", "init-top", "gallium-vfio"),
            Path.Combine(p.DracutModulesDirectory, "90gallium-vfio", "module-setup.sh"),
            Path.Combine(p.DracutModulesDirectory, "90gallium-vfio", "gallium-vfio-early.sh"),
        ], stages.Files().Select(f => f.Path));
    }

    [Fact]
    public void The_early_unit_runs_the_early_mode_before_udev_its_coldplug_and_module_loading()
    {
        using var host = new SimHost();
        WithBootTools(host);
        var files = new BootStages(host.Persistence).Files();
        string unit = files[0].Content;
        Assert.Contains("\nDefaultDependencies=no\n", unit);
        Assert.Contains("\nBefore=systemd-udevd.service systemd-udev-trigger.service systemd-modules-load.service sysinit.target\n", unit);
        Assert.Contains($"\nExecStart={host.Persistence.ScriptPath} --early\n", unit);
        Assert.Contains($"\nConditionDirectoryNotEmpty={host.Persistence.RecordsDirectory}\n", unit);
        Assert.Equal("[Unit]\nWants=gallium-vfio-early.service", string.Join("\n", files[1].Content.Split('\n').Where(l => l.Length > 0 && l[0] != '#')));
    }

    [Fact]
    public void The_initramfs_scripts_are_valid_shell_and_name_the_script_and_records_quoted()
    {
        using var host = new SimHost();
        WithBootTools(host);
        foreach (var f in new BootStages(host.Persistence).Files().Where(f => f.Stage != "systemd"))
        {
            Assert.Equal(PassthroughPersistence.ScriptMode, f.Mode);
            Assert.Contains($"script='{host.Persistence.ScriptPath}'", f.Content);
            Assert.DoesNotContain("@", f.Content.Replace(host.Persistence.ScriptPath, "", StringComparison.Ordinal), StringComparison.Ordinal);
            var (code, err) = Shell(f.Content.StartsWith("#!/bin/bash", StringComparison.Ordinal) ? "bash" : "sh", "-n", "-c", f.Content);
            Assert.True(code == 0, $"{f.Path}: {err}");
        }
    }

    [Fact]
    public void The_initramfs_tools_hook_copies_the_script_the_records_and_pending_changes_into_the_image()
    {
        const string functions = "/usr/share/initramfs-tools/hook-functions";
        if (!File.Exists(functions)) { Console.WriteLine($"SKIP: {functions} is missing (package initramfs-tools)"); return; }
        using var host = new SimHost();
        WithBootTools(host);
        host.Enable(StandardHost.Gpu);
        var p = host.Persistence;
        p.WriteFile(Path.Combine(host.Context.Paths.ConfigDirectory, "pending.d", "group-3"), "member 0000:01:00.0 driver=nvidia\n", PassthroughPersistence.FileMode);
        string dest = Path.Combine(host.Kernel.RootDirectory, "initramfs-dest");
        Directory.CreateDirectory(dest);
        var (code, err) = Shell("env", $"DESTDIR={dest}", "verbose=n", "sh", new BootStages(p).InitramfsHookPath);
        Assert.True(code == 0, err);
        foreach (string f in new[] { p.ScriptPath, p.RecordPath(A(StandardHost.Gpu)), p.RecordPath(A(StandardHost.GpuAudio)),
                     Path.Combine(host.Context.Paths.ConfigDirectory, "pending.d", "group-3") })
            Assert.Equal(File.ReadAllText(f), File.ReadAllText(dest + f));
        Assert.True(File.GetUnixFileMode(dest + p.ScriptPath).HasFlag(UnixFileMode.UserExecute));
    }

    [Fact]
    public void Enable_writes_the_boot_stages_and_a_failure_at_any_of_them_leaves_no_file_behind()
    {
        using var host = new SimHost();
        WithBootTools(host);
        var paths = host.Context.Paths;
        var roots = new[] { paths.SystemdUnitDirectory, paths.InitramfsToolsDirectory, paths.DracutModulesDirectory };
        var before = host.Kernel.Snapshot();
        var boot = new BootStages(host.Persistence).Files().Select(f => f.Path).ToArray();
        var plan = host.Planner.PlanEnable(A(StandardHost.FreeNic));
        Assert.Equal(boot, plan.Steps.Where(s => boot.Contains(s.PersistedPath)).Select(s => s.PersistedPath));
        for (int i = 0; i < boot.Length; i++)
        {
            plan = host.Planner.PlanEnable(A(StandardHost.FreeNic));
            string obstacle = Path.Combine(boot[i], "obstacle");  // a non-empty directory the rename cannot replace
            Directory.CreateDirectory(obstacle);
            var e = Assert.Throws<PassthroughStepFailedException>(() =>
            {
                try { host.Runner.Run(plan); }
                catch (PassthroughStepFailedException) { throw; }
                finally { Assert.True(Directory.Exists(obstacle), $"step {i}: the obstacle at {boot[i]} is gone"); }
                Assert.Fail($"step {i} ({boot[i]}) did not fail");
            });
            Assert.Equal(boot[i], e.Step.PersistedPath);
            Assert.True(before == host.Kernel.Snapshot(), string.Join("; ", before.Differences(host.Kernel.Snapshot())));
            foreach (string f in boot.Take(i)) Assert.False(File.Exists(f), $"{f} was left behind");
            for (string? d = boot[i]; d is not null && !roots.Contains(d) && Directory.Exists(d); d = Path.GetDirectoryName(d))
            {
                if (d == boot[i]) Directory.Delete(d, recursive: true);
                else if (!Directory.EnumerateFileSystemEntries(d).Any()) Directory.Delete(d);
                else break;
            }
        }
        host.Enable(StandardHost.FreeNic);
        foreach (var f in new BootStages(host.Persistence).Files()) Assert.Equal(f.Content, File.ReadAllText(f.Path));
    }

    [Fact]
    public void The_rule_sorts_before_80_drivers_and_sets_the_override_while_the_rules_are_applied()
    {
        using var host = new SimHost();
        var p = host.Persistence;
        string name = Path.GetFileName(p.RulePath(A(StandardHost.Gpu)));
        Assert.Equal("70-gallium-vfio-0000:01:00.0.rules", name);
        Assert.True(string.CompareOrdinal(name, "80-drivers.rules") < 0);
        string active = Assert.Single(p.RuleContent(A(StandardHost.Gpu)).Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l[0] != '#');
        Assert.Equal($"ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"0000:01:00.0\", PROGRAM==\"{p.ScriptPath} --wants %k\", RESULT==\"vfio-pci\", " +
                     $"ATTR{{driver_override}}=\"vfio-pci\", RUN+=\"{p.ScriptPath} %k\"", active);
    }

    [Fact]
    public void Enable_replaces_the_old_rule_that_ran_after_the_host_driver_and_Disable_removes_any_left()
    {
        using var host = new SimHost();
        var p = host.Persistence;
        string legacy = p.LegacyRulePath(A(StandardHost.FreeNic));
        p.WriteFile(legacy, "old\n", PassthroughPersistence.FileMode);
        host.Enable(StandardHost.FreeNic);
        Assert.False(File.Exists(legacy));
        Assert.True(File.Exists(p.RulePath(A(StandardHost.FreeNic))));
        p.WriteFile(legacy, "old\n", PassthroughPersistence.FileMode);
        host.Disable(StandardHost.FreeNic);
        Assert.False(File.Exists(legacy));
        Assert.False(File.Exists(p.RulePath(A(StandardHost.FreeNic))));
    }

    [Fact]
    public void A_device_driverctl_persists_for_vfio_pci_gets_no_second_owner_and_Disable_removes_driverctls_record()
    {
        using var host = new SimHost();
        var p = host.Persistence;
        var nic = A(StandardHost.FreeNic);
        host.Enable(StandardHost.FreeNic);   // what driverctl set-override does to the kernel
        p.RemoveFile(p.RecordPath(nic));
        p.RemoveFile(p.RulePath(nic));
        p.WriteFile(p.DriverctlRecordPath(nic), "vfio-pci\n", PassthroughPersistence.FileMode);
        Assert.Equal(BindingPersistence.Driverctl, new DeviceInventory(host.Context).Read(nic)!.PersistedBy);

        Assert.True(host.Planner.PlanEnable(nic).IsNoOp);
        host.Enable(StandardHost.FreeNic);
        Assert.False(File.Exists(p.RecordPath(nic)));
        Assert.False(File.Exists(p.RulePath(nic)));

        var plan = host.Planner.PlanDisable(nic);
        Assert.Contains(plan.Steps, s => s.PersistedPath == p.DriverctlRecordPath(nic) && s.Description.Contains($"driverctl unset-override {nic}"));
        host.Runner.Run(plan);
        Assert.False(File.Exists(p.DriverctlRecordPath(nic)));
        Assert.Equal("e1000e", host.Driver(StandardHost.FreeNic));
        Assert.Equal(BindingPersistence.None, new DeviceInventory(host.Context).Read(nic)!.PersistedBy);
    }

    [Fact]
    public void A_failure_removing_driverctls_record_puts_the_device_back_on_vfio_pci()
    {
        using var host = new SimHost();
        var p = host.Persistence;
        var nic = A(StandardHost.FreeNic);
        host.Enable(StandardHost.FreeNic);
        p.RemoveFile(p.RecordPath(nic));
        p.RemoveFile(p.RulePath(nic));
        p.WriteFile(p.DriverctlRecordPath(nic), "vfio-pci\n", PassthroughPersistence.FileMode);
        var plan = host.Planner.PlanDisable(nic);
        Assert.Equal(p.DriverctlRecordPath(nic), plan.Steps[^1].PersistedPath);
        // driverctl's record becomes something unlink(2) refuses: a directory.
        File.Delete(p.DriverctlRecordPath(nic));
        Directory.CreateDirectory(Path.Combine(p.DriverctlRecordPath(nic), "obstacle"));
        var before = host.Kernel.Snapshot();
        var e = Assert.Throws<PassthroughStepFailedException>(() => host.Runner.Run(plan));
        Assert.Same(plan.Steps[^1], e.Step);
        Assert.True(before == host.Kernel.Snapshot(), string.Join("; ", before.Differences(host.Kernel.Snapshot())));
        Assert.Equal("vfio-pci", host.Driver(StandardHost.FreeNic));
    }

    [Fact]
    public void Enable_refuses_a_device_driverctl_persists_for_another_driver_with_the_unset_command()
    {
        using var host = new SimHost();
        var p = host.Persistence;
        p.WriteFile(p.DriverctlRecordPath(A(StandardHost.GpuAudio)), "snd_hda_intel\n", PassthroughPersistence.FileMode);
        var e = Assert.Throws<PciDeviceDriverctlOverrideException>(() => host.Planner.PlanEnable(A(StandardHost.Gpu)));
        Assert.Equal("PciDeviceDriverctlOverride", e.ErrorId);
        Assert.Equal(StandardHost.GpuAudio, e.Target);
        Assert.StartsWith($"driverctl unset-override {StandardHost.GpuAudio}", e.RecommendedAction);
        Assert.Empty(host.Kernel.Writes);
    }

    [Fact]
    public void A_recorded_device_on_a_host_driver_is_drifted_and_Add_is_refused_with_the_repair()
    {
        using var host = new SimHost();
        host.Enable(StandardHost.Gpu);
        var inventory = new DeviceInventory(host.Context);
        BindingDrift.ThrowIfDrifted(inventory, A(StandardHost.Gpu));  // enabled and on vfio-pci: fine
        // Rebound by hand: override cleared, audio back on its host driver; the records stay.
        host.Kernel.Write($"bus/pci/devices/{StandardHost.GpuAudio}/driver_override", "\n", TimeSpan.FromSeconds(1));
        host.Kernel.Write("bus/pci/drivers/vfio-pci/unbind", StandardHost.GpuAudio, TimeSpan.FromSeconds(1));
        host.Kernel.Write("bus/pci/drivers_probe", StandardHost.GpuAudio, TimeSpan.FromSeconds(1));
        Assert.Equal("snd_hda_intel", host.Driver(StandardHost.GpuAudio));
        var audio = inventory.Read(A(StandardHost.GpuAudio))!;
        Assert.True(BindingDrift.IsDrifted(audio));
        Assert.False(BindingDrift.IsDrifted(inventory.Read(A(StandardHost.Gpu))!));

        var e = Assert.Throws<PciDeviceDriftedException>(() => BindingDrift.ThrowIfDrifted(inventory, A(StandardHost.Gpu)));
        Assert.Equal("PciDeviceDrifted", e.ErrorId);
        Assert.Equal([A(StandardHost.GpuAudio)], e.Drifted.Select(d => d.Address));
        Assert.Contains("0000:01:00.1 is on snd_hda_intel although Gallium persists it for vfio-pci", e.Message);
        Assert.StartsWith($"Enable-GalliumPciPassthrough -Address {StandardHost.Gpu}", e.RecommendedAction);

        host.Enable(StandardHost.Gpu);  // the repair
        Assert.Equal("vfio-pci", host.Driver(StandardHost.GpuAudio));
        BindingDrift.ThrowIfDrifted(new DeviceInventory(host.Context), A(StandardHost.Gpu));
    }

    [Fact]
    public void Only_drift_onto_another_driver_stops_Add()
    {
        var d = new PciDevice { Address = A("0000:05:00.0"), VendorId = 0x8086, DeviceId = 0x10d3, Driver = "e1000e", PassthroughState = PassthroughState.Drifted };
        Assert.True(BindingDrift.IsDrifted(d));
        Assert.True(BindingDrift.IsDrifted(d with { Driver = null }));
        Assert.False(BindingDrift.IsDrifted(d with { Driver = "vfio-pci" }));   // override cleared: still usable by a VM
        Assert.False(BindingDrift.IsDrifted(d with { PassthroughState = PassthroughState.Host }));
    }

    [Fact]
    public void The_early_mode_only_sets_the_overrides_of_recorded_devices_no_unbind_no_module_load()
    {
        using var host = new SimHost(new HostOptions { VfioPciLoaded = false });
        var p = host.Persistence;
        p.WriteFile(p.ScriptPath, p.ScriptContent, PassthroughPersistence.ScriptMode);
        foreach (var a in new[] { StandardHost.Gpu, StandardHost.FreeNic })
            p.WriteFile(p.RecordPath(A(a)), PassthroughPersistence.RecordContent, PassthroughPersistence.FileMode);
        var (code, err) = ScriptRun.Run(host, "--early");
        Assert.True(code == 0, err);
        Assert.Equal(
        [
            "bus/pci/devices/0000:01:00.0/driver_override <- vfio-pci",
            "bus/pci/devices/0000:05:00.0/driver_override <- vfio-pci",
        ], host.Kernel.Writes.Select(w => $"{w.Path} <- {w.Value.TrimEnd('\n')}"));
        Assert.False(host.Kernel.IsModuleLoaded("vfio_pci"));
        Assert.Equal("nvidia", host.Driver(StandardHost.Gpu));      // a driver that already holds it is left to the rule's RUN
        Assert.Null(host.Kernel.OverrideOf(StandardHost.GpuAudio)); // no record: untouched

        host.Kernel.ResetCounters();
        (code, err) = ScriptRun.Run(host, "--early");                // again: the overrides are set, nothing to write
        Assert.True(code == 0, err);
        Assert.Empty(host.Kernel.Writes);
    }

    private static (int Code, string Stderr) Shell(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe, args) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        using var proc = Process.Start(psi)!;
        var err = proc.StandardError.ReadToEndAsync();
        proc.StandardOutput.ReadToEnd();
        Assert.True(proc.WaitForExit(60_000));
        return (proc.ExitCode, err.GetAwaiter().GetResult());
    }
}
