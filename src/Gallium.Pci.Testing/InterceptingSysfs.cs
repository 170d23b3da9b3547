using Gallium.Pci.Host;

namespace Gallium.Pci.Testing;

/// <summary>Wraps any sysfs (the real kernel inside the QEMU test guest, or a simulated one) and calls a hook before every
/// write: the hook may do something real first (unload vfio-pci mid-group) or fail the write with an errno, so rollback is
/// proved against a real kernel, not only the simulator.</summary>
public sealed class InterceptingSysfs(ISysfs inner, Func<int, string, string, int> beforeWrite) : ISysfs
{
    private int _writes;

    /// <summary>Kernel writes that reached the inner sysfs, in order.</summary>
    public List<string> Writes { get; } = [];

    public string Root => inner.Root;
    public bool Exists(string path) => inner.Exists(path);
    public string? ReadText(string path) => inner.ReadText(path);
    public string? ReadLink(string path) => inner.ReadLink(path);
    public string? Resolve(string path) => inner.Resolve(path);
    public IReadOnlyList<string> List(string path) => inner.List(path);

    public void Write(string path, string value, TimeSpan timeout)
    {
        int n = ++_writes;
        int errno = beforeWrite(n, path, value);  // the hook returns 0 to let the write through, else the errno to fail it with
        if (errno != 0)
            throw new KernelWriteException(path, value, errno, $"Injected {Errnos.Name(errno)} on write {n} ({path}).");
        inner.Write(path, value, timeout);
        Writes.Add($"{path} <- {value.TrimEnd('\n')}");
    }

    /// <summary>A copy of <paramref name="host"/> whose sysfs writes pass through <paramref name="beforeWrite"/>.</summary>
    public static (HostContext Host, InterceptingSysfs Sysfs) Wrap(HostContext host, Func<int, string, string, int> beforeWrite)
    {
        var sysfs = new InterceptingSysfs(host.Sysfs, beforeWrite);
        return (host with { Sysfs = sysfs }, sysfs);
    }
}
