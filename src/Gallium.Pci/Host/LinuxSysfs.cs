using System.Runtime.InteropServices;

namespace Gallium.Pci.Host;

/// <summary>sysfs (or a tree shaped like it) on the local file system.</summary>
public sealed class LinuxSysfs : ISysfs
{
    private readonly string _root;

    public LinuxSysfs(string root)
    {
        _root = Path.GetFullPath(root).TrimEnd('/');
        if (_root.Length == 0) _root = "/";
    }

    public string Root => _root;

    private string Full(string path)
    {
        if (path.Length > 0 && path[0] == '/') throw new ArgumentException($"sysfs paths are relative: '{path}'", nameof(path));
        return path.Length == 0 ? _root : _root + "/" + path;
    }

    public bool Exists(string path)
    {
        string full = Full(path);
        return File.Exists(full) || Directory.Exists(full) || new FileInfo(full).LinkTarget is not null;
    }

    // Reads are open/read/close through libc: a FileStream adds fstat, flock twice and a second read per attribute, which
    // made a 4,096-function inventory slower than lspci (7 syscalls per attribute against its 3).
    public string? ReadText(string path) => SysfsLibc.ReadFile(Full(path));

    public string? ReadLink(string path) => SysfsLibc.ReadLink(Full(path));

    public string? Resolve(string path)
    {
        string? real = RealPath(Full(path));
        if (real is null) return null;
        if (real == _root) return "";
        return real.StartsWith(_root + "/", StringComparison.Ordinal) ? real[(_root.Length + 1)..] : null;
    }

    // readdir names only: the .NET enumerator stats and lstats every symbolic link it meets (a device directory has
    // several: driver, iommu_group, subsystem, physfn, virtfnN), which doubled the cost of listing one.
    public IReadOnlyList<string> List(string path)
    {
        if (SysfsLibc.CanReadDirectories) return SysfsLibc.ListNames(Full(path)) ?? [];
        try { return Directory.GetFileSystemEntries(Full(path)).Select(Path.GetFileName).ToArray()!; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
    }

    /// <summary>Opens a directory once for a run of reads: it is listed from that handle and its files are read relative
    /// to it, so each read resolves one name instead of the whole path again (a fifth less time per attribute on a
    /// 4,096-function tree). Null when it cannot be opened.</summary>
    internal SysfsDirectory? OpenDirectory(string path) => SysfsDirectory.Open(Full(path));

    public void Write(string path, string value, TimeSpan timeout)
    {
        string full = Full(path);
        WriteGuard.Check(_root, full);
        KernelFile.Write(full, path, value, timeout);
    }

    internal static string? RealPath(string full) => SysfsLibc.RealPath(full);
}

/// <summary>One directory a reader goes through file by file: its entry names, and its files read by name.</summary>
internal interface ISysfsDirectory : IDisposable
{
    IReadOnlyList<string> Names { get; }
    string? ReadText(string name);
    string? ReadLink(string name);
}

internal static class SysfsDirectories
{
    /// <summary>The directory through one open handle on the real file system, else (a wrapped or simulated seam) by path
    /// through the seam itself, so what the seam sees and counts stays the same. Null when it is missing or empty.</summary>
    public static ISysfsDirectory? Open(ISysfs sysfs, string path)
    {
        if (sysfs is LinuxSysfs linux && SysfsLibc.CanReadDirectories)
        {
            var directory = linux.OpenDirectory(path);
            if (directory is null || directory.Names.Count > 0) return directory;
            directory.Dispose();
            return null;
        }
        var names = sysfs.List(path);
        return names.Count == 0 ? null : new PathDirectory(sysfs, path, names);
    }

    private sealed class PathDirectory(ISysfs sysfs, string path, IReadOnlyList<string> names) : ISysfsDirectory
    {
        public IReadOnlyList<string> Names => names;
        public string? ReadText(string name) => sysfs.ReadText(path + "/" + name);
        public string? ReadLink(string name) => sysfs.ReadLink(path + "/" + name);
        public void Dispose() { }
    }
}

/// <summary>An open directory (opendir) whose files are read with openat/readlinkat relative to it. Not thread-safe: one
/// reader at a time, disposed when done.</summary>
internal sealed class SysfsDirectory : ISysfsDirectory
{
    private IntPtr _dir;
    private readonly int _fd;

    private SysfsDirectory(IntPtr dir, int fd, List<string> names)
    {
        _dir = dir;
        _fd = fd;
        Names = names;
    }

    public IReadOnlyList<string> Names { get; }

    public static SysfsDirectory? Open(string full)
    {
        IntPtr dir = SysfsLibc.OpenDir(full);
        if (dir == IntPtr.Zero) return null;
        var names = SysfsLibc.ReadNames(dir);
        int fd = SysfsLibc.DirFd(dir);
        if (names is null || fd < 0)
        {
            SysfsLibc.CloseDir(dir);
            return null;
        }
        return new SysfsDirectory(dir, fd, names);
    }

    public string? ReadText(string name)
    {
        ObjectDisposedException.ThrowIf(_dir == IntPtr.Zero, this);
        return SysfsLibc.ReadFile(_fd, name);
    }

    public string? ReadLink(string name)
    {
        ObjectDisposedException.ThrowIf(_dir == IntPtr.Zero, this);
        return SysfsLibc.ReadLink(_fd, name);
    }

    public void Dispose()
    {
        if (_dir == IntPtr.Zero) return;
        SysfsLibc.CloseDir(_dir);  // closes _fd too
        _dir = IntPtr.Zero;
    }
}

/// <summary>The few libc calls the read side needs, each retried on EINTR; every failure is a null (the file is gone,
/// unreadable, or not what was expected), which is what <see cref="ISysfs"/> promises its callers. A path is absolute, or
/// relative to the directory descriptor given (AT_FDCWD for none).</summary>
internal static unsafe partial class SysfsLibc
{
    private const string Libc = "libc";
    public const int AtFdCwd = -100;
    private const int O_RDONLY = 0;
    private const int O_CLOEXEC = 0x80000;  // same value on x86_64 and aarch64
    private const int EINTR = 4;
    /// <summary>Every sysfs text attribute fits in one page (the kernel's show() buffer is PAGE_SIZE).</summary>
    private const int Page = 4096;
    /// <summary>struct dirent on 64-bit Linux (glibc and musl): d_ino 8, d_off 8, d_reclen 2, d_type 1, then d_name.</summary>
    private const int DirentNameOffset = 19;

    /// <summary>readdir's layout is known only for 64-bit processes; a 32-bit one lists directories through .NET.</summary>
    public static bool CanReadDirectories => Environment.Is64BitProcess;

    public static string? ReadFile(string full) => ReadFile(AtFdCwd, full);

    public static string? ReadFile(int dirFd, string path)
    {
        int fd;
        do fd = openat(dirFd, path, O_RDONLY | O_CLOEXEC); while (fd < 0 && Marshal.GetLastPInvokeError() == EINTR);
        if (fd < 0) return null;
        try
        {
            byte* page = stackalloc byte[Page];
            long n = ReadSome(fd, page, Page);
            if (n < 0) return null;
            // A short read is the end: sysfs returns the whole attribute at once, and a regular file reads short only at EOF.
            if (n < Page) return System.Text.Encoding.UTF8.GetString(page, (int)n);
            using var rest = new MemoryStream();
            rest.Write(new ReadOnlySpan<byte>(page, Page));
            while ((n = ReadSome(fd, page, Page)) > 0) rest.Write(new ReadOnlySpan<byte>(page, (int)n));
            return n < 0 ? null : System.Text.Encoding.UTF8.GetString(rest.GetBuffer(), 0, (int)rest.Length);
        }
        finally { close(fd); }
    }

    private static long ReadSome(int fd, byte* buffer, int count)
    {
        long n;
        do n = read(fd, buffer, count); while (n < 0 && Marshal.GetLastPInvokeError() == EINTR);
        return n;
    }

    public static string? ReadLink(string full) => ReadLink(AtFdCwd, full);

    public static string? ReadLink(int dirFd, string path)
    {
        const int max = 4096;  // PATH_MAX
        byte* target = stackalloc byte[max];
        long n = readlinkat(dirFd, path, target, max);
        return n <= 0 || n >= max ? null : System.Text.Encoding.UTF8.GetString(target, (int)n);
    }

    /// <summary>Entry names without "." and ".."; null when the directory cannot be opened or read.</summary>
    public static List<string>? ListNames(string full)
    {
        IntPtr dir = OpenDir(full);
        if (dir == IntPtr.Zero) return null;
        try { return ReadNames(dir); }
        finally { CloseDir(dir); }
    }

    public static IntPtr OpenDir(string full) => opendir(full);

    public static int DirFd(IntPtr dir) => dirfd(dir);

    public static void CloseDir(IntPtr dir) => closedir(dir);

    /// <summary>The rest of an open directory's names without "." and ".."; null when reading it fails.</summary>
    public static List<string>? ReadNames(IntPtr dir)
    {
        var names = new List<string>();
        while (true)
        {
            byte* entry = (byte*)readdir(dir);  // the marshaller clears errno first, so null with errno 0 is the end
            if (entry == null) return Marshal.GetLastPInvokeError() == 0 ? names : null;
            byte* name = entry + DirentNameOffset;
            int length = 0;
            while (name[length] != 0) length++;
            if (name[0] == (byte)'.' && (length == 1 || (length == 2 && name[1] == (byte)'.'))) continue;
            names.Add(System.Text.Encoding.UTF8.GetString(name, length));
        }
    }

    public static string? RealPath(string full)
    {
        IntPtr p = realpath(full, IntPtr.Zero);
        if (p == IntPtr.Zero) return null;
        try { return Marshal.PtrToStringUTF8(p); }
        finally { NativeMemory.Free((void*)p); }  // realpath(3) mallocs the result
    }

    [LibraryImport(Libc, StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int openat(int dirFd, string path, int flags);
    [LibraryImport(Libc, SetLastError = true)]
    private static partial nint read(int fd, byte* buffer, nint count);
    [LibraryImport(Libc)]
    private static partial int close(int fd);
    [LibraryImport(Libc, StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial nint readlinkat(int dirFd, string path, byte* buffer, nint size);
    [LibraryImport(Libc, StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial IntPtr opendir(string path);
    [LibraryImport(Libc, SetLastError = true)]
    private static partial IntPtr readdir(IntPtr dir);
    [LibraryImport(Libc)]
    private static partial int dirfd(IntPtr dir);
    [LibraryImport(Libc)]
    private static partial int closedir(IntPtr dir);
    [LibraryImport(Libc, StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial IntPtr realpath(string path, IntPtr resolved);
}

/// <summary>One write(2) to a kernel attribute, with the errno surfaced and a timeout for writes that block.</summary>
internal static class KernelFile
{
    public static void Write(string full, string shownPath, string value, TimeSpan timeout)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(value);
        // A zero-byte write(2) is a no-op in sysfs (REFERENCE §3.3): clearing an override must write "\n".
        if (bytes.Length == 0) throw new ArgumentException("A sysfs write of zero bytes does nothing; write \"\\n\" to clear.", nameof(value));
        var task = Task.Factory.StartNew(() =>
        {
            using var handle = File.OpenHandle(full, FileMode.Open, FileAccess.Write);
            RandomAccess.Write(handle, bytes, 0);  // one pwrite64, no O_CREAT, no truncate (REFERENCE §3.6 .NET note)
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        bool done;
        try { done = task.Wait(timeout); }
        catch (AggregateException ae) when (ae.InnerException is IOException or UnauthorizedAccessException)
        {
            var inner = ae.InnerException!;
            int errno = inner is UnauthorizedAccessException ? Errnos.EACCES
                : inner is FileNotFoundException or DirectoryNotFoundException ? Errnos.ENOENT
                : inner.HResult > 0 && inner.HResult < 4096 ? inner.HResult : Errnos.EIO;
            throw new KernelWriteException(shownPath, value, errno,
                $"Writing '{value.TrimEnd('\n')}' to {full} failed: {Errnos.Name(errno)} ({inner.Message}).", inner);
        }
        if (!done)
        {
            throw new KernelWriteException(shownPath, value, Errnos.ETIMEDOUT,
                $"Writing '{value.TrimEnd('\n')}' to {full} did not return within {timeout.TotalSeconds:0.#} s (the kernel is waiting, e.g. for a VM to release a vfio device).");
        }
    }
}

/// <summary>Refuses writes that would leave the tree a view was made for, and, inside a test run, any write to the
/// machine's real /sys unless the kernel is the disposable QEMU guest of tests/guest (its command line says so).</summary>
public static class WriteGuard
{
    /// <summary>Set to 1 by the test runners (xUnit module initializer, the Pester child pwsh).</summary>
    public const string TestGuardVariable = "GALLIUM_TEST_GUARD";
    /// <summary>A kernel command-line token only the test guest's boot line carries.</summary>
    public const string GuestCmdlineToken = "gallium.testguest=1";

    public static void Check(string root, string full)
    {
        string? dir = LinuxSysfs.RealPath(Path.GetDirectoryName(full) ?? "/");
        string? rootReal = LinuxSysfs.RealPath(root);
        if (dir is null || rootReal is null) return; // nothing there to write to; the write itself reports ENOENT
        if (dir != rootReal && !dir.StartsWith(rootReal + "/", StringComparison.Ordinal))
            throw new KernelWriteException(full, "", Errnos.EPERM, $"Refusing to write {full}: it resolves outside {root} (to {dir}).");
        if (Environment.GetEnvironmentVariable(TestGuardVariable) == "1" && IsRealSysfs(rootReal, dir) && !InTestGuest())
            throw new KernelWriteException(full, "", Errnos.EPERM,
                $"Refusing to write {full}: tests may write only to a simulated kernel or inside the QEMU test guest, never to this machine's sysfs.");
    }

    /// <summary>A kernel sysfs: by its file system type (a bind mount or a second mount of sysfs anywhere), or by its path.</summary>
    private static bool IsRealSysfs(string rootReal, string dir) =>
        rootReal == "/sys" || rootReal.StartsWith("/sys/", StringComparison.Ordinal)
        || Native.FileSystemType(dir) == Native.SysfsMagic || Native.FileSystemType(rootReal) == Native.SysfsMagic;

    private static bool InTestGuest()
    {
        try { return File.ReadAllText("/proc/cmdline").Split(' ', '\n').Contains(GuestCmdlineToken); }
        catch (IOException) { return false; }
    }
}
