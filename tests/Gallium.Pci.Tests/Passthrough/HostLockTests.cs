using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Gallium.Pci.Host;
using Xunit.Abstractions;

namespace Gallium.Pci.Tests.Passthrough;

[SupportedOSPlatform("linux")]
public sealed class HostLockTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempDirectory _temp = new();

    private HostPaths Paths => HostPaths.Under(_temp.Path);

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Acquire_creates_the_directory_0700_and_records_our_pid_until_released()
    {
        using (var held = HostLock.Acquire(Paths, TimeSpan.FromSeconds(5)))
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Paths.LockDirectory));
            Assert.Equal(Path.Combine(Paths.LockDirectory, HostLock.FileName), held.Path);
            Assert.Equal($"{Environment.ProcessId}\n", ReadShared(held.Path));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(held.Path));
        }
        Assert.Equal("", ReadShared(Path.Combine(Paths.LockDirectory, HostLock.FileName)));
    }

    [Fact]
    public void A_second_holder_times_out_naming_the_holders_pid()
    {
        using var first = HostLock.Acquire(Paths, TimeSpan.FromSeconds(5));
        var e = Assert.Throws<HostLockTimeoutException>(() => HostLock.Acquire(Paths, TimeSpan.FromMilliseconds(100)));
        Assert.Equal("HostLockTimeout", e.ErrorId);
        Assert.Equal(ErrorKind.ResourceBusy, e.Kind);
        Assert.Equal(Environment.ProcessId, e.HolderPid);
        Assert.Contains($"PID {Environment.ProcessId}", e.Message);
    }

    [Fact]
    public async Task A_waiter_gets_the_lock_once_the_holder_releases_it()
    {
        var first = HostLock.Acquire(Paths, TimeSpan.FromSeconds(5));
        using var waiting = new ManualResetEventSlim();
        var second = Task.Run(() =>
        {
            waiting.Set();
            return HostLock.Acquire(Paths, TimeSpan.FromSeconds(60));
        });
        waiting.Wait();
        first.Dispose();
        using var got = await second;
        Assert.Equal($"{Environment.ProcessId}\n", ReadShared(got.Path));
    }

    [Fact]
    public void A_lock_directory_that_is_a_symbolic_link_is_refused()
    {
        string elsewhere = _temp.Sub("elsewhere");
        Directory.CreateDirectory(elsewhere, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Directory.CreateDirectory(Path.GetDirectoryName(Paths.LockDirectory)!);
        File.CreateSymbolicLink(Paths.LockDirectory, elsewhere);
        var e = Assert.Throws<HostPathUnsafeException>(() => HostLock.Acquire(Paths, TimeSpan.FromSeconds(1)));
        Assert.Equal("HostPathUnsafe", e.ErrorId);
        Assert.Contains("symbolic link", e.Message);
        Assert.Empty(Directory.EnumerateFileSystemEntries(elsewhere));
    }

    [Theory]
    [InlineData("777")]
    [InlineData("770")]
    [InlineData("702")]
    public void A_group_or_world_writable_lock_directory_is_refused(string octal)
    {
        Directory.CreateDirectory(Paths.LockDirectory);
        File.SetUnixFileMode(Paths.LockDirectory, (UnixFileMode)Convert.ToInt32(octal, 8));
        var e = Assert.Throws<HostPathUnsafeException>(() => HostLock.Acquire(Paths, TimeSpan.FromSeconds(1)));
        Assert.Contains("writable", e.Message);
        Assert.False(File.Exists(Path.Combine(Paths.LockDirectory, HostLock.FileName)));
    }

    [Fact]
    public void A_lock_directory_owned_by_another_user_is_refused_when_we_are_root()
    {
        if (geteuid() != 0)
        {
            output.WriteLine("SKIPPED: needs root to give the directory to another user (chown).");
            return;
        }
        Directory.CreateDirectory(Paths.LockDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Assert.Equal(0, chown(Paths.LockDirectory, 65534, 65534));
        var e = Assert.Throws<HostPathUnsafeException>(() => HostLock.Acquire(Paths, TimeSpan.FromSeconds(1)));
        Assert.Contains("owned by uid 65534", e.Message);
    }

    [Fact]
    public void A_lock_file_that_is_a_symbolic_link_is_not_followed()
    {
        Directory.CreateDirectory(Paths.LockDirectory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string victim = _temp.Sub("victim");
        File.WriteAllText(victim, "precious\n");
        File.CreateSymbolicLink(Path.Combine(Paths.LockDirectory, HostLock.FileName), victim);
        var e = Assert.Throws<HostPathUnsafeException>(() => HostLock.Acquire(Paths, TimeSpan.FromSeconds(1)));
        Assert.Contains("symbolic link", e.Message);
        Assert.Equal("precious\n", File.ReadAllText(victim));
    }

    /// <summary>Reads with plain open/read: a .NET FileStream would take flock(LOCK_SH), which the held LOCK_EX refuses.</summary>
    private static string ReadShared(string path)
    {
        int fd = open(path, 0, 0);
        Assert.True(fd >= 0, $"open {path}");
        try
        {
            var buf = new byte[4096];
            int n = (int)read(fd, buf, buf.Length);
            return System.Text.Encoding.ASCII.GetString(buf, 0, n);
        }
        finally { close(fd); }
    }

    [DllImport("libc", SetLastError = true)] private static extern int open(string path, int flags, int mode);
    [DllImport("libc", SetLastError = true)] private static extern nint read(int fd, byte[] buf, nint count);
    [DllImport("libc")] private static extern int close(int fd);
    [DllImport("libc")] private static extern uint geteuid();
    [DllImport("libc", SetLastError = true)] private static extern int chown(string path, int owner, int group);
}
