using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Gallium.Pci.Host;

namespace Gallium.Pci.Tests.Passthrough;

[SupportedOSPlatform("linux")]
public sealed class PassthroughPersistenceTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly PassthroughPersistence _store;
    private static readonly PciAddress Gpu = PciAddress.Parse("0000:01:00.0");

    public PassthroughPersistenceTests() => _store = new PassthroughPersistence(HostPaths.Under(_temp.Path));

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Paths_follow_the_driverctl_layout_below_the_configured_directories()
    {
        var paths = HostPaths.Under(_temp.Path);
        Assert.Equal(Path.Combine(paths.ConfigDirectory, "pci.d", "0000:01:00.0"), _store.RecordPath(Gpu));
        Assert.Equal(Path.Combine(paths.UdevRulesDirectory, "70-gallium-vfio-0000:01:00.0.rules"), _store.RulePath(Gpu));
        Assert.Equal(Path.Combine(paths.LibexecDirectory, "gallium-vfio-apply"), _store.ScriptPath);
    }

    [Fact]
    public void The_udev_rule_holds_exactly_this_device_for_vfio_pci_on_add_and_runs_the_apply_script()
    {
        string rule = _store.RuleContent(Gpu);
        string[] active = rule.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith('#')).ToArray();
        Assert.Equal($"ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"0000:01:00.0\", PROGRAM==\"{_store.ScriptPath} --wants %k\", " +
            $"RESULT==\"vfio-pci\", ATTR{{driver_override}}=\"vfio-pci\", RUN+=\"{_store.ScriptPath} %k\"", Assert.Single(active));
    }

    [Fact]
    public void Files_are_written_with_exact_modes_owned_by_us_and_leave_no_temporary_file()
    {
        _store.WriteFile(_store.RecordPath(Gpu), PassthroughPersistence.RecordContent, PassthroughPersistence.FileMode);
        _store.WriteFile(_store.ScriptPath, _store.ScriptContent, PassthroughPersistence.ScriptMode);
        Assert.Equal("vfio-pci\n", File.ReadAllText(_store.RecordPath(Gpu)));
        Assert.Equal((UnixFileMode)Convert.ToInt32("644", 8), File.GetUnixFileMode(_store.RecordPath(Gpu)));
        Assert.Equal((UnixFileMode)Convert.ToInt32("755", 8), File.GetUnixFileMode(_store.ScriptPath));
        Assert.Equal((UnixFileMode)Convert.ToInt32("755", 8), File.GetUnixFileMode(_store.RecordsDirectory));
        Assert.Equal(geteuid(), Owner(_store.RecordPath(Gpu)));
        Assert.Equal([Gpu], _store.RecordedDevices());
        Assert.Equal(new[] { "0000:01:00.0" }, Directory.EnumerateFileSystemEntries(_store.RecordsDirectory).Select(p => Path.GetFileName(p)!).ToArray());
    }

    [Fact]
    public void A_replace_is_a_rename_readers_holding_the_old_file_keep_it_whole()
    {
        string path = _store.RulePath(Gpu);
        _store.WriteFile(path, "old rule\n", PassthroughPersistence.FileMode);
        ulong oldInode = Inode(path);
        using var reader = new FileStream(path, FileMode.Open, FileAccess.Read);
        _store.WriteFile(path, "new rule\n", PassthroughPersistence.FileMode);
        Assert.Equal("old rule\n", new StreamReader(reader).ReadToEnd());  // the old inode, untouched
        Assert.Equal("new rule\n", File.ReadAllText(path));
        Assert.NotEqual(oldInode, Inode(path));
        Assert.Single(Directory.EnumerateFileSystemEntries(Path.GetDirectoryName(path)!));
    }

    [Fact]
    public void A_failed_replace_leaves_the_target_and_no_temporary_file()
    {
        string path = _store.RulePath(Gpu);
        Directory.CreateDirectory(Path.Combine(path, "obstacle"));  // rename(2) onto a non-empty directory fails
        var e = Assert.Throws<PersistenceWriteException>(() => _store.WriteFile(path, "rule\n", PassthroughPersistence.FileMode));
        Assert.Equal("PassthroughPersistenceFailed", e.ErrorId);
        Assert.Equal(path, e.Path);
        Assert.True(Directory.Exists(Path.Combine(path, "obstacle")));
        Assert.Equal(new[] { Path.GetFileName(path) }, Directory.EnumerateFileSystemEntries(Path.GetDirectoryName(path)!).Select(p => Path.GetFileName(p)!).ToArray());
    }

    [Fact]
    public void A_group_writable_config_directory_is_refused_before_anything_is_written()
    {
        Directory.CreateDirectory(_store.Paths.ConfigDirectory);
        File.SetUnixFileMode(_store.Paths.ConfigDirectory, (UnixFileMode)Convert.ToInt32("775", 8));
        Assert.Throws<HostPathUnsafeException>(() => _store.WriteFile(_store.RecordPath(Gpu), "vfio-pci\n", PassthroughPersistence.FileMode));
        Assert.False(Directory.Exists(_store.RecordsDirectory));
    }

    [Fact]
    public void A_rules_directory_that_is_a_symbolic_link_is_refused()
    {
        string elsewhere = _temp.Sub("elsewhere");
        Directory.CreateDirectory(elsewhere);
        Directory.CreateDirectory(Path.GetDirectoryName(_store.Paths.UdevRulesDirectory)!);
        File.CreateSymbolicLink(_store.Paths.UdevRulesDirectory, elsewhere);
        Assert.Throws<HostPathUnsafeException>(() => _store.WriteFile(_store.RulePath(Gpu), "x\n", PassthroughPersistence.FileMode));
        Assert.Empty(Directory.EnumerateFileSystemEntries(elsewhere));
    }

    [Fact]
    public void Remove_unlinks_a_symbolic_link_without_following_it_and_read_treats_it_as_absent()
    {
        string victim = _temp.Sub("victim");
        File.WriteAllText(victim, "vfio-pci\n");
        Directory.CreateDirectory(_store.RecordsDirectory);
        File.CreateSymbolicLink(_store.RecordPath(Gpu), victim);
        Assert.Null(_store.ReadFile(_store.RecordPath(Gpu)));
        _store.RemoveFile(_store.RecordPath(Gpu));
        Assert.False(File.Exists(_store.RecordPath(Gpu)) || new FileInfo(_store.RecordPath(Gpu)).LinkTarget is not null);
        Assert.Equal("vfio-pci\n", File.ReadAllText(victim));
    }

    [Theory]
    [InlineData("/bin/sh")]
    [InlineData("/usr/bin/dash")]
    [InlineData("/usr/bin/busybox")]
    public void The_apply_script_parses_in_posix_shells(string shell)
    {
        if (!File.Exists(shell)) { Assert.Fail($"{shell} is missing (CI installs dash and busybox-static)"); }
        string script = _temp.Sub("apply.sh");
        File.WriteAllText(script, _store.ScriptContent);
        var psi = new ProcessStartInfo(shell) { RedirectStandardError = true, RedirectStandardOutput = true };
        if (shell.EndsWith("busybox", StringComparison.Ordinal)) psi.ArgumentList.Add("sh");
        psi.ArgumentList.Add("-n");
        psi.ArgumentList.Add(script);
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{shell} -n: {err}");
        Assert.StartsWith("#!/bin/sh\n", _store.ScriptContent);
        Assert.Contains($"records='{_store.RecordsDirectory}'", _store.ScriptContent);
    }

    private static ulong Inode(string path) => Stat(path).Inode;
    private static uint Owner(string path) => Stat(path).Uid;

    private static (ulong Inode, uint Uid) Stat(string path)
    {
        var buf = new byte[256];
        Assert.Equal(0, statx(-100, path, 0x100, 0x7ff, buf));
        return (BitConverter.ToUInt64(buf, 32), BitConverter.ToUInt32(buf, 20));  // struct statx: stx_ino at 32, stx_uid at 20
    }

    [DllImport("libc", SetLastError = true)] private static extern int statx(int dirfd, string path, int flags, uint mask, byte[] buf);
    [DllImport("libc")] private static extern uint geteuid();
}
