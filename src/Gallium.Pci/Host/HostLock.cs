using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Gallium.Pci.Host;

/// <summary>The host-wide lock that serialises every change to passthrough state: flock(2) LOCK_EX on a file in a
/// root-only directory, so two shells (or a shell and a boot script) never interleave their sysfs writes.
/// The holder writes its PID into the file so a waiter that gives up can say who holds it.</summary>
public sealed class HostLock : IDisposable
{
    public const string FileName = "passthrough.lock";
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(25);

    private SafeFileHandle? _handle;

    private HostLock(string path, SafeFileHandle handle)
    {
        Path = path;
        _handle = handle;
    }

    /// <summary>The lock file.</summary>
    public string Path { get; }

    /// <summary>Takes the lock, waiting up to <paramref name="timeout"/>. Creates the lock directory 0700 when missing and
    /// refuses one that is a symbolic link, not owned by root (or, when not root, by us), or group/world-writable.</summary>
    /// <exception cref="HostLockTimeoutException">another process held the lock for the whole timeout.</exception>
    /// <exception cref="HostPathUnsafeException">the lock directory fails the checks above.</exception>
    public static HostLock Acquire(HostPaths paths, TimeSpan timeout, Action<string>? narrate = null)
    {
        string dir = paths.LockDirectory;
        SecureDirectory.Ensure(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string path = System.IO.Path.Combine(dir, FileName);
        narrate?.Invoke($"lock {path} (flock LOCK_EX, wait up to {timeout.TotalSeconds:0.#} s)");

        int fd = Native.open(path, Native.O_RDWR | Native.O_CREAT | Native.O_CLOEXEC | Native.O_NOFOLLOW, 0x180 /* 0600 */);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new HostPathUnsafeException(path, $"cannot open the host lock file {path}: {Errnos.Name(errno)}"
                + (errno == Native.ELOOP ? " (it is a symbolic link)" : "") + ".");
        }
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            var clock = Stopwatch.StartNew();
            while (Native.flock(fd, Native.LOCK_EX | Native.LOCK_NB) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno != Native.EWOULDBLOCK && errno != Native.EINTR)
                    throw new HostLockFailedException(path, $"flock({path}) failed: {Errnos.Name(errno)}.");
                if (clock.Elapsed >= timeout) throw new HostLockTimeoutException(path, ReadHolder(path), timeout);
                Thread.Sleep(PollInterval);
            }
            byte[] pid = System.Text.Encoding.ASCII.GetBytes(Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + "\n");
            if (Native.ftruncate(fd, 0) != 0 || Native.pwrite(fd, pid, pid.Length, 0) != pid.Length)
                throw new HostLockFailedException(path, $"cannot record our PID in {path}: {Errnos.Name(Marshal.GetLastPInvokeError())}.");
            return new HostLock(path, handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>The PID the current holder wrote, or null when the file is empty (it is between truncate and write).</summary>
    private static int? ReadHolder(string path)
    {
        // Raw open/read: any .NET FileStream takes flock(LOCK_SH|LOCK_NB) to emulate FileShare, which the holder's LOCK_EX refuses.
        string? text = Native.ReadSmallFile(path);
        return int.TryParse(text?.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) ? pid : null;
    }

    /// <summary>Releases the lock: empties the PID and closes the descriptor (closing drops the flock).</summary>
    public void Dispose()
    {
        var handle = Interlocked.Exchange(ref _handle, null);
        if (handle is null) return;
        _ = Native.ftruncate((int)handle.DangerousGetHandle(), 0);
        handle.Dispose();
    }
}

public sealed class HostLockTimeoutException(string path, int? holderPid, TimeSpan timeout)
    : GalliumException("HostLockTimeout", ErrorKind.ResourceBusy,
        $"Another Gallium operation holds the host lock {path}"
        + (holderPid is int pid ? $" (PID {pid})" : "")
        + $"; gave up after {timeout.TotalSeconds:0.#} s. Wait for it to finish, then try again.", path)
{
    public int? HolderPid { get; } = holderPid;
    public override bool IsHostLevel => true;
}

/// <summary>A directory we would write host state into (or lock in) could be tampered with by someone other than root.</summary>
public sealed class HostPathUnsafeException(string path, string reason)
    : GalliumException("HostPathUnsafe", ErrorKind.PermissionDenied, $"Refusing to use {path}: {reason}", path)
{
    public string Path { get; } = path;
    public override bool IsHostLevel => true;
}

/// <summary>flock(2) on the host lock, or recording our PID in it, failed for a reason other than another holder.</summary>
public sealed class HostLockFailedException(string path, string message)
    : GalliumException("HostLockFailed", ErrorKind.ResourceUnavailable, message, path)
{
    public override bool IsHostLevel => true;
}

/// <summary>Checks (and creates) a directory that only root may change: no symbolic link, owned by root (or by us when we
/// are not root, as in tests), not group- or world-writable — and every directory above it too, since whoever can
/// rename an ancestor can swap the whole subtree. An ancestor may be world-writable only with the sticky bit (like /tmp:
/// there only an entry's owner can rename it); a symbolic-link ancestor must be root's, and the directories it leads
/// to are checked the same way.</summary>
internal static class SecureDirectory
{
    private const uint GroupOrOtherWrite = 0x12;  // S_IWGRP | S_IWOTH
    private const uint Sticky = 0x200;            // S_ISVTX

    public static void Ensure(string path, UnixFileMode createMode)
    {
        if (OperatingSystem.IsWindows()) throw new PlatformNotSupportedException("Gallium changes Linux hosts only.");
        path = System.IO.Path.GetFullPath(path).TrimEnd('/');
        CheckAncestors(path);
        // Each missing directory is made with exactly this mode (mkdir(2) applies the umask; intermediate directories
        // made by CreateDirectory would get 0777 & ~umask).
        var missing = new Stack<string>();
        for (string? d = path; !string.IsNullOrEmpty(d) && !Native.TryLstat(d, out _, out _, out _); d = System.IO.Path.GetDirectoryName(d))
            missing.Push(d);
        while (missing.TryPop(out string? d))
        {
            try
            {
                Directory.CreateDirectory(d);
                File.SetUnixFileMode(d, createMode);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new HostPathUnsafeException(path, $"it does not exist and cannot be created ({e.Message}).");
            }
        }
        Check(path);
    }

    public static void Check(string path)
    {
        if (!Native.TryLstat(path, out uint type, out uint owner, out uint mode))
            throw new HostPathUnsafeException(path, "it does not exist.");
        if (type == Native.S_IFLNK) throw new HostPathUnsafeException(path, "it is a symbolic link.");
        if (type != Native.S_IFDIR) throw new HostPathUnsafeException(path, "it is not a directory.");
        if (!Trusted(owner)) throw new HostPathUnsafeException(path, $"it is owned by uid {owner}, not root.");
        if ((mode & GroupOrOtherWrite) != 0)
            throw new HostPathUnsafeException(path, $"it is group- or world-writable (mode {Convert.ToString(mode & 0xfff, 8)}).");
        CheckAncestors(path);
    }

    private static bool Trusted(uint owner) => owner == 0 || owner == Native.geteuid();

    /// <summary>Every existing directory above <paramref name="path"/>, as written and as resolved.</summary>
    private static void CheckAncestors(string path)
    {
        string full = System.IO.Path.GetFullPath(path).TrimEnd('/');
        CheckDirectories(Ancestors(full), full);
        string? deepest = System.IO.Path.GetDirectoryName(full);
        while (!string.IsNullOrEmpty(deepest) && !Native.TryLstat(deepest, out _, out _, out _)) deepest = System.IO.Path.GetDirectoryName(deepest);
        if (!string.IsNullOrEmpty(deepest) && LinuxSysfs.RealPath(deepest) is { } real && real != deepest)
            CheckDirectories(Ancestors(real).Append(real), full);  // where a root-owned link on the way leads
    }

    /// <summary>"/", "/a", "/a/b" for "/a/b/c".</summary>
    private static IEnumerable<string> Ancestors(string full)
    {
        var chain = new Stack<string>();
        for (string? d = System.IO.Path.GetDirectoryName(full); !string.IsNullOrEmpty(d); d = System.IO.Path.GetDirectoryName(d)) chain.Push(d);
        return chain;
    }

    private static void CheckDirectories(IEnumerable<string> directories, string shown)
    {
        foreach (string dir in directories)
        {
            if (!Native.TryLstat(dir, out uint type, out uint owner, out uint mode)) return;  // the rest is created by us
            if (!Trusted(owner))
                throw new HostPathUnsafeException(shown, $"the directory {dir} above it is owned by uid {owner}, not root: its owner could swap what lies below.");
            if (type == Native.S_IFLNK) continue;  // root's own link: where it leads is checked as resolved
            if (type != Native.S_IFDIR) throw new HostPathUnsafeException(shown, $"{dir} above it is not a directory.");
            if ((mode & GroupOrOtherWrite) != 0 && (mode & Sticky) == 0)
                throw new HostPathUnsafeException(shown,
                    $"the directory {dir} above it is group- or world-writable (mode {Convert.ToString(mode & 0xfff, 8)}) without the sticky bit: others could swap what lies below.");
        }
    }
}

internal static class Native
{
    public const int O_RDWR = 2, O_CREAT = 0x40, O_CLOEXEC = 0x80000;
    public const int LOCK_EX = 2, LOCK_NB = 4;
    public const int EINTR = 4, EWOULDBLOCK = 11, ELOOP = 40;
    public const uint S_IFMT = 0xf000, S_IFDIR = 0x4000, S_IFLNK = 0xa000, S_IFREG = 0x8000;
    private const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100;
    private const uint STATX_BASIC_STATS = 0x7ff;

    /// <summary>O_NOFOLLOW differs by architecture (asm-generic 0x20000; arm and powerpc 0x8000).</summary>
    public static int O_NOFOLLOW => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.Arm or Architecture.Arm64 or Architecture.Armv6 or Architecture.Ppc64le => 0x8000,
        _ => 0x20000,
    };

    [DllImport("libc", SetLastError = true)]
    public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, int mode);

    [DllImport("libc", SetLastError = true)]
    public static extern int flock(int fd, int operation);

    [DllImport("libc", SetLastError = true)]
    public static extern int ftruncate(int fd, long length);

    [DllImport("libc", SetLastError = true)]
    public static extern nint pwrite(int fd, byte[] buf, nint count, long offset);

    [DllImport("libc", SetLastError = true)]
    public static extern nint pread(int fd, byte[] buf, nint count, long offset);

    [DllImport("libc", SetLastError = true)]
    public static extern int fsync(int fd);

    /// <summary>The first 4 KiB of a file as text, read with plain open/pread (no .NET share-mode flock); null when it cannot be opened.</summary>
    public static string? ReadSmallFile(string path)
    {
        int fd = open(path, O_CLOEXEC | O_NOFOLLOW /* O_RDONLY = 0 */, 0);
        if (fd < 0) return null;
        try
        {
            byte[] buf = new byte[4096];
            nint n = pread(fd, buf, buf.Length, 0);
            return n < 0 ? null : System.Text.Encoding.UTF8.GetString(buf, 0, (int)n);
        }
        finally { _ = close(fd); }
    }

    [DllImport("libc", SetLastError = true)]
    public static extern int close(int fd);

    [DllImport("libc")]
    public static extern uint geteuid();

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe int statfs([MarshalAs(UnmanagedType.LPUTF8Str)] string path, byte* buf);

    /// <summary>SYSFS_MAGIC from linux/magic.h: statfs(2)'s f_type of any sysfs mount, wherever it is mounted.</summary>
    public const long SysfsMagic = 0x62656572;

    /// <summary>The file system type (statfs f_type) of the file system holding <paramref name="path"/>; null when it
    /// cannot be read. f_type is the first member of struct statfs, a word wide, on every Linux architecture we run on.</summary>
    public static unsafe long? FileSystemType(string path)
    {
        byte* buf = stackalloc byte[512];
        if (statfs(path, buf) != 0) return null;
        return IntPtr.Size == 8 ? *(long*)buf : *(int*)buf;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern unsafe int statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte* buf);

    /// <summary>lstat through statx(2), whose struct layout is the same on every architecture (unlike struct stat):
    /// stx_uid at offset 20, stx_mode (u16) at 28.</summary>
    public static unsafe bool TryLstat(string path, out uint type, out uint owner, out uint mode)
    {
        byte* buf = stackalloc byte[256];
        if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, buf) != 0)
        {
            type = owner = mode = 0;
            return false;
        }
        owner = *(uint*)(buf + 20);
        uint m = *(ushort*)(buf + 28);
        type = m & S_IFMT;
        mode = m & 0xfff;
        return true;
    }
}
