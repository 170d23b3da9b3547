using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text;
using Gallium.Pci.Host;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Passthrough;

/// <summary>Runs the persisted apply script with /bin/sh against the simulated kernel. The script's test-only writer hook
/// sends each write (and the fake modprobe each load) over a pair of FIFOs to this process, which hands it to the
/// simulated kernel and answers with the errno, so the script sees the kernel's effect before its next read.</summary>
[SupportedOSPlatform("linux")]
public sealed class ApplyScriptTests
{
    private static PciAddress A(string s) => PciAddress.Parse(s);

    private static void Record(SimHost host, params string[] addresses)
    {
        var p = host.Persistence;
        p.WriteFile(p.ScriptPath, p.ScriptContent, PassthroughPersistence.ScriptMode);
        foreach (var a in addresses) p.WriteFile(p.RecordPath(A(a)), PassthroughPersistence.RecordContent, PassthroughPersistence.FileMode);
    }

    private static string[] Writes(SimHost host) =>
        host.Kernel.Writes.Select(w => $"{w.Path} <- {w.Value.TrimEnd('\n')}{(w.Succeeded ? "" : " => " + Errnos.Name(w.Errno))}").ToArray();

    [Fact]
    public void All_applies_every_record_in_the_kernel_order()
    {
        using var host = new SimHost();
        Record(host, StandardHost.Gpu, StandardHost.GpuAudio);
        var (code, err) = ScriptRun.Run(host, "--all");
        Assert.True(code == 0, err);
        Assert.Equal("vfio-pci", host.Driver(StandardHost.Gpu));
        Assert.Equal("vfio-pci", host.Driver(StandardHost.GpuAudio));
        Assert.Equal("vfio-pci", host.Kernel.OverrideOf(StandardHost.Gpu));
        string sys = host.Kernel.SysfsRoot;
        Assert.Equal(
        [
            "bus/pci/devices/0000:01:00.0/driver_override <- vfio-pci",
            "bus/pci/drivers/nvidia/unbind <- 0000:01:00.0",
            "bus/pci/drivers_probe <- 0000:01:00.0",
            "bus/pci/devices/0000:01:00.1/driver_override <- vfio-pci",
            "bus/pci/drivers/snd_hda_intel/unbind <- 0000:01:00.1",
            "bus/pci/drivers_probe <- 0000:01:00.1",
        ], Writes(host));
        Assert.StartsWith(sys, host.Kernel.SysfsRoot);
    }

    [Fact]
    public void One_device_applies_only_that_record_as_the_udev_rule_runs_it()
    {
        using var host = new SimHost();
        Record(host, StandardHost.FreeNic, StandardHost.UnboundDevice);
        var (code, err) = ScriptRun.Run(host, StandardHost.FreeNic);
        Assert.True(code == 0, err);
        Assert.Equal("vfio-pci", host.Driver(StandardHost.FreeNic));
        Assert.Equal("(none)", host.Driver(StandardHost.UnboundDevice));
        Assert.Null(host.Kernel.OverrideOf(StandardHost.UnboundDevice));
    }

    [Fact]
    public void A_device_without_a_record_is_left_alone()
    {
        using var host = new SimHost();
        Record(host, StandardHost.FreeNic);
        var (code, _) = ScriptRun.Run(host, StandardHost.Gpu);
        Assert.Equal(0, code);
        Assert.Empty(host.Kernel.Writes);
        Assert.Equal("nvidia", host.Driver(StandardHost.Gpu));
    }

    [Fact]
    public void A_device_already_on_vfio_pci_only_gets_its_override()
    {
        using var host = new SimHost();
        host.Enable(StandardHost.FreeNic);
        host.Kernel.Write($"bus/pci/devices/{StandardHost.FreeNic}/driver_override", "\n", TimeSpan.FromSeconds(1));
        host.Kernel.ResetCounters();
        var (code, err) = ScriptRun.Run(host, "--all");
        Assert.True(code == 0, err);
        Assert.Equal(["bus/pci/devices/0000:05:00.0/driver_override <- vfio-pci"], Writes(host));
    }

    [Fact]
    public void Vfio_pci_is_loaded_first_when_it_is_missing()
    {
        using var host = new SimHost(new HostOptions { VfioPciLoaded = false });
        Record(host, StandardHost.FreeNic);
        var (code, err) = ScriptRun.Run(host, StandardHost.FreeNic);
        Assert.True(code == 0, err);
        Assert.True(host.Kernel.IsModuleLoaded("vfio_pci"));
        Assert.Equal("vfio-pci", host.Driver(StandardHost.FreeNic));
    }

    [Fact]
    public void A_module_that_will_not_load_stops_before_any_write()
    {
        using var host = new SimHost(new HostOptions { VfioPciLoaded = false, VfioPciLoadFailure = "administratively prohibited" });
        Record(host, StandardHost.FreeNic);
        var (code, err) = ScriptRun.Run(host, StandardHost.FreeNic);
        Assert.Equal(1, code);
        Assert.Contains("cannot load vfio-pci", err);
        Assert.Empty(host.Kernel.Writes);
        Assert.Equal("e1000e", host.Driver(StandardHost.FreeNic));
    }

    [Fact]
    public void A_probe_that_lands_on_the_wrong_driver_is_reported()
    {
        using var host = new SimHost();
        Record(host, StandardHost.FreeNic);
        host.Kernel.WrongDriverOnProbe(StandardHost.FreeNic, "e1000e");
        var (code, err) = ScriptRun.Run(host, StandardHost.FreeNic);
        Assert.Equal(1, code);
        Assert.Contains("bound to 'e1000e' after probing, expected vfio-pci", err);
    }

    [Fact]
    public void A_failing_write_is_reported_with_a_nonzero_exit()
    {
        using var host = new SimHost();
        Record(host, StandardHost.FreeNic);
        host.Kernel.FailWhere("/unbind", Errnos.EBUSY);
        var (code, err) = ScriptRun.Run(host, StandardHost.FreeNic);
        Assert.Equal(1, code);
        Assert.Contains("unbinding from e1000e failed", err);
    }

    [Theory]
    [InlineData("../../etc/passwd", 1)]
    [InlineData("0000:01:00.0;reboot", 1)]
    [InlineData("", 2)]
    public void Bad_arguments_are_refused(string argument, int expected)
    {
        using var host = new SimHost();
        Record(host, StandardHost.Gpu);
        var (code, _) = ScriptRun.Run(host, argument);
        Assert.Equal(expected, code);
        Assert.Empty(host.Kernel.Writes);
    }

    [Fact]
    public void The_installed_kernel_functions_write_the_attributes_themselves()
    {
        // A plain tree (no kernel behind it): the writes land in the files, newline-terminated as echo makes them.
        using var temp = new TempDirectory();
        var paths = HostPaths.Under(temp.Sub("state"));
        var store = new PassthroughPersistence(paths);
        store.WriteFile(store.ScriptPath, store.ScriptContent, PassthroughPersistence.ScriptMode);
        store.WriteFile(store.RecordPath(A("0000:05:00.0")), PassthroughPersistence.RecordContent, PassthroughPersistence.FileMode);
        string sys = temp.Sub("sys");
        string dev = Path.Combine(sys, "devices/pci0000:00/0000:00:1c.1/0000:05:00.0");
        Directory.CreateDirectory(dev);
        Directory.CreateDirectory(Path.Combine(sys, "bus/pci/devices"));
        Directory.CreateDirectory(Path.Combine(sys, "bus/pci/drivers/e1000e"));
        Directory.CreateDirectory(Path.Combine(sys, "bus/pci/drivers/vfio-pci"));
        File.CreateSymbolicLink(Path.Combine(sys, "bus/pci/devices/0000:05:00.0"), "../../../devices/pci0000:00/0000:00:1c.1/0000:05:00.0");
        File.CreateSymbolicLink(Path.Combine(dev, "driver"), "../../../../bus/pci/drivers/e1000e");
        File.WriteAllText(Path.Combine(dev, "driver_override"), "(null)\n");
        File.WriteAllText(Path.Combine(sys, "bus/pci/drivers/e1000e/unbind"), "");
        File.WriteAllText(Path.Combine(sys, "bus/pci/drivers_probe"), "");

        var (code, err) = ScriptRun.RunPlain(store, sys, "0000:05:00.0", temp.Path);

        Assert.Equal(1, code);  // nothing rebinds a plain tree: the final check fails, as it should
        Assert.Contains("bound to 'e1000e' after probing", err);
        Assert.Equal("vfio-pci\n", File.ReadAllText(Path.Combine(dev, "driver_override")));
        Assert.Equal("0000:05:00.0\n", File.ReadAllText(Path.Combine(sys, "bus/pci/drivers/e1000e/unbind")));
        Assert.Equal("0000:05:00.0\n", File.ReadAllText(Path.Combine(sys, "bus/pci/drivers_probe")));
    }
    [Fact]
    public void Wants_answers_vfio_pci_for_a_recorded_device_and_nothing_for_others()
    {
        using var host = new SimHost();
        Record(host, StandardHost.FreeNic);
        var (code, _) = ScriptRun.Run(host, "--wants " + StandardHost.FreeNic, out string yes);
        Assert.Equal(0, code);
        Assert.Equal("vfio-pci\n", yes);
        ScriptRun.Run(host, "--wants " + StandardHost.Gpu, out string no);
        Assert.Equal("", no);
        Assert.Equal(2, ScriptRun.Run(host, "--wants ../../etc", out _).Code);
        Assert.Empty(host.Kernel.Writes);
    }

    [Theory]
    [InlineData(false, "")]          // an interrupted Enable: its members were not recorded before it, so none is applied
    [InlineData(true, "vfio-pci\n")] // an interrupted Disable: they were, so every one is, record or not
    public void A_device_in_an_unfinished_change_follows_the_changes_start_state_not_its_record(bool recordedAtStart, string expected)
    {
        using var host = new SimHost();
        if (!recordedAtStart) Record(host, StandardHost.Gpu);  // half an Enable's records, written before the kill
        else Record(host);                                     // a Disable killed after removing the records
        var pending = new PendingChanges(host.Persistence);
        pending.Write(new UnfinishedChange
        {
            IommuGroup = 12, Direction = recordedAtStart ? PassthroughDirection.Disable : PassthroughDirection.Enable,
            ProcessId = 1, Started = DateTimeOffset.UtcNow,
            Members = [new UnfinishedMember(A(StandardHost.Gpu), "nvidia", null, recordedAtStart, recordedAtStart),
                       new UnfinishedMember(A(StandardHost.GpuAudio), "snd_hda_intel", null, recordedAtStart, recordedAtStart)],
        });
        ScriptRun.Run(host, "--wants " + StandardHost.Gpu, out string gpu);
        ScriptRun.Run(host, "--wants " + StandardHost.GpuAudio, out string audio);
        Assert.Equal(expected, gpu);
        Assert.Equal(expected, audio);
        var (code, err) = ScriptRun.Run(host, "--all");
        Assert.True(code == 0, err);
        string want = recordedAtStart ? "vfio-pci" : "nvidia";
        Assert.Equal(want, host.Driver(StandardHost.Gpu));
        Assert.Equal(recordedAtStart ? "vfio-pci" : "snd_hda_intel", host.Driver(StandardHost.GpuAudio));
    }

    [Fact]
    public void A_symlinked_record_is_ignored_and_what_it_points_at_is_never_printed()
    {
        using var host = new SimHost();
        Record(host);
        string secret = Path.Combine(host.Kernel.RootDirectory, "secret");
        File.WriteAllText(secret, "vfio-pci\nroot-password-hash\n");
        Directory.CreateDirectory(host.Persistence.RecordsDirectory, PassthroughPersistence.ScriptMode);
        File.CreateSymbolicLink(host.Persistence.RecordPath(A(StandardHost.FreeNic)), secret);
        var (code, err) = ScriptRun.Run(host, StandardHost.FreeNic, out string stdout);
        Assert.Equal(0, code);
        Assert.Contains("its record is a symbolic link; ignored", err);
        Assert.DoesNotContain("root-password-hash", err + stdout);
        Assert.Empty(host.Kernel.Writes);
    }

    [Fact]
    public void A_record_with_other_content_is_ignored_without_echoing_it()
    {
        using var host = new SimHost();
        Record(host);
        host.Persistence.WriteFile(host.Persistence.RecordPath(A(StandardHost.FreeNic)), "$(reboot)\u001b[2J\n", PassthroughPersistence.FileMode);
        var (_, err) = ScriptRun.Run(host, StandardHost.FreeNic);
        Assert.Contains("its record does not say vfio-pci; ignored", err);
        Assert.DoesNotContain("reboot", err);
        Assert.Empty(host.Kernel.Writes);
    }

    [Fact]
    public void A_records_directory_others_can_write_makes_the_script_refuse_everything()
    {
        using var host = new SimHost();
        Record(host, StandardHost.FreeNic);
        File.SetUnixFileMode(host.Persistence.RecordsDirectory, (UnixFileMode)0x1ff);  // 0777
        var (code, err) = ScriptRun.Run(host, "--all");
        Assert.Equal(1, code);
        Assert.Contains("writable by others: refusing", err);
        Assert.Empty(host.Kernel.Writes);
    }

    [Fact]
    public void A_symlinked_driver_override_is_never_written_through()
    {
        using var host = new SimHost();
        Record(host, StandardHost.FreeNic);
        string dev = Path.Combine(host.Kernel.SysfsRoot, host.Kernel.DevicePath(StandardHost.FreeNic));
        string victim = Path.Combine(host.Kernel.RootDirectory, "victim");
        File.WriteAllText(victim, "untouched\n");
        File.Delete(Path.Combine(dev, "driver_override"));
        File.CreateSymbolicLink(Path.Combine(dev, "driver_override"), victim);
        var (code, err) = ScriptRun.Run(host, StandardHost.FreeNic);
        Assert.Equal(1, code);
        Assert.Contains("is missing or a symbolic link; refusing to write it", err);
        Assert.Equal("untouched\n", File.ReadAllText(victim));
        Assert.Empty(host.Kernel.Writes);
    }

    [Fact]
    public void The_installed_script_takes_nothing_from_its_environment()
    {
        // The old test hooks, a hostile PATH (fake readlink, stat, id, modprobe that would leave a mark) and a sysfs root
        // in the environment: the installed script uses none of them.
        using var temp = new TempDirectory();
        var store = new PassthroughPersistence(HostPaths.Under(temp.Sub("state")));
        store.WriteFile(store.RecordPath(A("0000:05:00.0")), PassthroughPersistence.RecordContent, PassthroughPersistence.FileMode);
        string script = store.ScriptContent;
        Assert.DoesNotContain("GALLIUM_", script);
        Assert.Contains("PATH=/usr/sbin:/usr/bin:/sbin:/bin\n", script);
        Assert.Contains("sys='/sys'", script);
        string bin = temp.Sub("evil-bin"), mark = Path.Combine(temp.Path, "used");
        Directory.CreateDirectory(bin);
        foreach (string tool in new[] { "readlink", "stat", "id", "modprobe", "logger", "printf", "cat" })
        {
            File.WriteAllText(Path.Combine(bin, tool), $"#!/bin/sh\necho {tool} >> '{mark}'\nexit 0\n");
            File.SetUnixFileMode(Path.Combine(bin, tool), PassthroughPersistence.ScriptMode);
        }
        string copy = Path.Combine(temp.Path, "apply");
        File.WriteAllText(copy, script);
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add(copy);
        psi.ArgumentList.Add("--wants");
        psi.ArgumentList.Add("0000:05:00.0");
        psi.Environment["PATH"] = bin;
        psi.Environment["GALLIUM_APPLY_SYSFS_ROOT"] = temp.Path;
        psi.Environment["GALLIUM_APPLY_SYSFS_WRITER"] = Path.Combine(bin, "modprobe");
        using var p = Process.Start(psi)!;
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.Equal("vfio-pci\n", stdout);
        Assert.False(File.Exists(mark), File.Exists(mark) ? $"used from PATH: {File.ReadAllText(mark)}" : "");
    }

}

/// <summary>Runs a test copy of the apply script with /bin/sh, serving its kernel writes from this process. The copy is
/// rendered by the same code as the installed script, with the simulated sysfs root and a kernel seam that sends each
/// write (and each module load) over a pair of FIFOs written in; the installed script has no such hook.</summary>
[SupportedOSPlatform("linux")]
internal static class ScriptRun
{
    public static (int Code, string Stderr) Run(SimHost host, string argument) => Run(host, argument, out _);

    public static (int Code, string Stderr) Run(SimHost host, string argument, out string stdout)
    {
        string dir = Path.Combine(host.Kernel.RootDirectory, "script-bridge-" + Guid.NewGuid().ToString("n")[..8]);
        Directory.CreateDirectory(dir);
        string request = Path.Combine(dir, "request"), reply = Path.Combine(dir, "reply");
        Assert.Equal(0, mkfifo(request, 0x180));
        Assert.Equal(0, mkfifo(reply, 0x180));
        string seam = $$"""
            # test seam: one kernel write (or a module load) per call over the FIFOs, answered with the errno
            kwrite() {
                printf '%s\n%s\n' "$1" "$2" > '{{request}}'
                read -r errno < '{{reply}}'
                [ "$errno" = 0 ] || { echo "write $2 > $1: errno $errno" >&2; return 1; }
            }
            load_vfio_pci() {
                kwrite modprobe vfio-pci
            }
            syslog() { :; }

            """;
        string copy = Path.Combine(dir, "gallium-vfio-apply");
        File.WriteAllText(copy, host.Persistence.RenderScript(host.Kernel.SysfsRoot, seam));

        var server = new Thread(() => Serve(host.Kernel, request, reply)) { IsBackground = true };
        server.Start();
        try
        {
            return Execute(Start(copy, argument), out stdout);
        }
        finally
        {
            File.WriteAllText(request, "");  // an empty request ends the server
            server.Join();
        }
    }

    /// <summary>The installed script's own kernel functions, against another sysfs root (a plain tree with no kernel behind it).</summary>
    public static (int Code, string Stderr) RunPlain(PassthroughPersistence store, string sysfsRoot, string argument, string dir)
    {
        string copy = Path.Combine(dir, "gallium-vfio-apply-plain");
        File.WriteAllText(copy, store.RenderScript(sysfsRoot, kernelSeam: null));
        return Execute(Start(copy, argument), out _);
    }

    private static ProcessStartInfo Start(string script, string argument)
    {
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add(script);
        foreach (string a in argument.Split(' ', StringSplitOptions.RemoveEmptyEntries)) psi.ArgumentList.Add(a);
        return psi;
    }

    private static (int, string) Execute(ProcessStartInfo psi, out string stdout)
    {
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        stdout = p.StandardOutput.ReadToEnd();
        Assert.True(p.WaitForExit(120_000), "the apply script did not finish");
        return (p.ExitCode, stderr.GetAwaiter().GetResult());
    }

    private static void Serve(SimulatedKernel kernel, string request, string reply)
    {
        while (true)
        {
            string text = File.ReadAllText(request);  // blocks until a writer opens, returns when it closes
            if (text.Length == 0) return;
            string[] lines = text.Split('\n');
            string errno;
            if (lines[0] == "modprobe") errno = kernel.Load(lines[1]) is null ? "0" : "1";
            else
            {
                string rel = lines[0].StartsWith(kernel.SysfsRoot + "/", StringComparison.Ordinal) ? lines[0][(kernel.SysfsRoot.Length + 1)..] : lines[0];
                try { kernel.Write(rel, lines[1] + "\n", TimeSpan.FromSeconds(5)); errno = "0"; }  // echo adds the newline
                catch (KernelWriteException e) { errno = e.Errno.ToString(System.Globalization.CultureInfo.InvariantCulture); }
            }
            using var answer = new FileStream(reply, FileMode.Open, FileAccess.Write);
            answer.Write(Encoding.ASCII.GetBytes(errno + "\n"));
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int mkfifo(string path, int mode);
}
