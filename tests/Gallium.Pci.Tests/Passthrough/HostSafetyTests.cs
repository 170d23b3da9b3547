using System.Diagnostics;
using System.Runtime.Versioning;
using Gallium.Pci.Host;

namespace Gallium.Pci.Tests.Passthrough;

/// <summary>The hostile environment of issue 11: state directories whose ancestors others could change, and a sysfs
/// mounted somewhere other than /sys that the test write guard must still recognise.</summary>
[SupportedOSPlatform("linux")]
public sealed class HostSafetyTests
{
    private static readonly PciAddress Nic = PciAddress.Parse("0000:05:00.0");

    [Fact]
    public void A_world_writable_directory_above_the_state_directories_is_refused_before_anything_is_written()
    {
        using var temp = new TempDirectory();
        string open = temp.Sub("open");
        Directory.CreateDirectory(open);
        File.SetUnixFileMode(open, (UnixFileMode)0x1ff);  // 0777, no sticky bit: anyone could rename etc/ away and plant their own
        var store = new PassthroughPersistence(HostPaths.Under(Path.Combine(open, "state")));
        var e = Assert.Throws<HostPathUnsafeException>(() =>
            store.WriteFile(store.RecordPath(Nic), PassthroughPersistence.RecordContent, PassthroughPersistence.FileMode));
        Assert.Contains($"the directory {open} above it is group- or world-writable", e.Message);
        Assert.False(Directory.Exists(Path.Combine(open, "state")));
        Assert.True(e.IsHostLevel);
    }

    [Fact]
    public void A_sticky_world_writable_ancestor_like_tmp_is_accepted()
    {
        using var temp = new TempDirectory();
        string sticky = temp.Sub("sticky");
        Directory.CreateDirectory(sticky);
        File.SetUnixFileMode(sticky, (UnixFileMode)0x3ff);  // 1777: only an entry's owner may rename it
        var store = new PassthroughPersistence(HostPaths.Under(Path.Combine(sticky, "state")));
        store.WriteFile(store.RecordPath(Nic), PassthroughPersistence.RecordContent, PassthroughPersistence.FileMode);
        Assert.Equal(PassthroughPersistence.RecordContent, store.ReadFile(store.RecordPath(Nic)));
        Assert.Equal("755", Convert.ToString((int)File.GetUnixFileMode(Path.Combine(sticky, "state/etc")), 8));
    }

    [Fact]
    public void A_state_directory_reached_through_a_link_into_a_writable_directory_is_refused()
    {
        using var temp = new TempDirectory();
        string open = temp.Sub("open");
        Directory.CreateDirectory(Path.Combine(open, "real"));
        File.SetUnixFileMode(open, (UnixFileMode)0x1ff);
        string link = temp.Sub("link");
        File.CreateSymbolicLink(link, Path.Combine(open, "real"));
        var store = new PassthroughPersistence(HostPaths.Under(Path.Combine(link, "state")));
        var e = Assert.Throws<HostPathUnsafeException>(() =>
            store.WriteFile(store.RecordPath(Nic), PassthroughPersistence.RecordContent, PassthroughPersistence.FileMode));
        Assert.Contains(open, e.Message);
    }

    [Fact]
    public void The_host_lock_checks_the_directories_above_its_own_too()
    {
        using var temp = new TempDirectory();
        string open = temp.Sub("open");
        Directory.CreateDirectory(open);
        File.SetUnixFileMode(open, (UnixFileMode)0x1f8);  // 0770: group-writable
        Assert.Throws<HostPathUnsafeException>(() => HostLock.Acquire(HostPaths.Under(open), TimeSpan.FromSeconds(1)));
    }

    /// <summary>A second mount of the real sysfs, under a temp directory: path-based checks would let a test write through
    /// it; the guard reads the file system type (statfs SYSFS_MAGIC). Needs root for mount(8), as CI has.</summary>
    [Fact]
    public void The_test_guard_refuses_writes_to_a_sysfs_mounted_anywhere()
    {
        Assert.True(Native.geteuid() == 0, "mounting a second sysfs needs root; CI runs the tests as root");
        Assert.Equal("1", Environment.GetEnvironmentVariable(WriteGuard.TestGuardVariable));
        using var temp = new TempDirectory();
        string mnt = temp.Sub("sysfs-elsewhere");
        Directory.CreateDirectory(mnt);
        Run("mount", "-t", "sysfs", "sysfs", mnt);
        try
        {
            Assert.Equal(Native.SysfsMagic, Native.FileSystemType(mnt));
            // An address no device has: if the guard ever failed, the kernel would only answer ENODEV.
            var e = Assert.Throws<KernelWriteException>(() =>
                new LinuxSysfs(mnt).Write("bus/pci/drivers_probe", "ffff:ff:1f.7", TimeSpan.FromSeconds(1)));
            Assert.Equal(Errnos.EPERM, e.Errno);
            Assert.Contains("never to this machine's sysfs", e.Message);
        }
        finally { Run("umount", mnt); }
    }

    private static void Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)}: {err}");
    }
}
