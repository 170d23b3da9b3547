namespace Gallium.Pci.Host;

/// <summary>The one seam to the kernel's sysfs (DESIGN.md "Host"). Paths are relative to the sysfs root and are
/// built only from validated values (a <see cref="PciAddress"/>, a driver name read from the kernel), never from user text.</summary>
public interface ISysfs
{
    /// <summary>The root this view reads (e.g. <c>/sys</c>); for messages only.</summary>
    string Root { get; }
    /// <summary>True when the path exists as a file, directory or symbolic link (a dangling link counts).</summary>
    bool Exists(string path);
    /// <summary>The attribute's text, or null when it does not exist or cannot be read.</summary>
    string? ReadText(string path);
    /// <summary>The raw target of a symbolic link, or null when the path is not a link.</summary>
    string? ReadLink(string path);
    /// <summary>The canonical path (relative to the root) a path resolves to through its links; null when it does not exist.</summary>
    string? Resolve(string path);
    /// <summary>Names of the entries of a directory; empty when it does not exist.</summary>
    IReadOnlyList<string> List(string path);
    /// <summary>One write(2) of <paramref name="value"/> to an attribute. Throws <see cref="KernelWriteException"/> carrying the
    /// errno; a write that has not returned after <paramref name="timeout"/> fails with ETIMEDOUT (REFERENCE §4.6: unbinding a
    /// vfio-pci device a VM holds blocks).</summary>
    void Write(string path, string value, TimeSpan timeout);
}

/// <summary>Read-only view of procfs (<c>/proc</c>): cmdline, cpuinfo, mountinfo, net/route, modules.</summary>
public interface IProcfs
{
    string Root { get; }
    string? ReadText(string path);
}

/// <summary>Device nodes (<c>/dev</c>): whether <c>/dev/vfio/vfio</c> and <c>/dev/vfio/&lt;group&gt;</c> exist.</summary>
public interface IDevfs
{
    string Root { get; }
    bool Exists(string path);
}

/// <summary>Kernel module loading (modprobe).</summary>
public interface IKernelModules
{
    /// <summary>Loads a module and its dependencies. Returns null on success, else the reason it could not be loaded.</summary>
    string? Load(string module);
    /// <summary>True when the running kernel has the module (as a .ko in modules.dep, or built in).</summary>
    bool IsAvailable(string module);
}

/// <summary>Who the module runs as.</summary>
public interface IHostIdentity
{
    bool IsRoot { get; }
}
