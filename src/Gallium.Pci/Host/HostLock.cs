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
/// are not root, as in tests), not group- or world-writable.</summary>
internal static class SecureDirectory
{
    public static void Ensure(string path, UnixFileMode createMode)
    {
        if (OperatingSystem.IsWindows()) throw new PlatformNotSupportedException("Gallium changes Linux hosts only.");
        if (!Native.TryLstat(path, out _, out _, out _))
        {
            try { Directory.CreateDirectory(path, createMode); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new HostPathUnsafeException(path, $"it does not exist and cannot be created ({e.Message}).");
            }
            File.SetUnixFileMode(path, createMode); // mkdir(2) applies the umask; the mode must be exactly this
        }
        Check(path);
    }

    public static void Check(string path)
    {
        if (!Native.TryLstat(path, out uint type, out uint owner, out uint mode))
            throw new HostPathUnsafeException(path, "it does not exist.");
        if (type == Native.S_IFLNK) throw new HostPathUnsafeException(path, "it is a symbolic link.");
        if (type != Native.S_IFDIR) throw new HostPathUnsafeException(path, "it is not a directory.");
        uint me = Native.geteuid();
        if (owner != 0 && owner != me)
            throw new HostPathUnsafeException(path, $"it is owned by uid {owner}, not root.");
        if ((mode & 0x12) != 0) // S_IWGRP | S_IWOTH
            throw new HostPathUnsafeException(path, $"it is group- or world-writable (mode {Convert.ToString(mode & 0xfff, 8)}).");
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
