using System.Globalization;
using Gallium.Pci.Host;

namespace Gallium.Pci.Tests.Inventory;

/// <summary>A minimal sysfs/procfs/dev tree in a temp directory, laid out as the kernel does it (REFERENCE §3.1–§3.5), with real
/// relative symlinks: only what the inventory and readiness tests need (the full simulated kernel lives in Gallium.Pci.Testing).</summary>
internal sealed class InventoryTree : IDisposable
{
    public InventoryTree()
    {
        Base = Directory.CreateTempSubdirectory("gallium-inv-").FullName;
        Sys = Path.Combine(Base, "sys");
        Proc = Path.Combine(Base, "proc");
        Dev = Path.Combine(Base, "dev");
        foreach (var d in new[] { Sys, Proc, Dev, Path.Combine(Sys, "bus/pci/devices"), Path.Combine(Sys, "bus/pci/drivers"), Path.Combine(Sys, "kernel/iommu_groups") })
            Directory.CreateDirectory(d);
    }

    public string Base { get; }
    public string Sys { get; }
    public string Proc { get; }
    public string Dev { get; }

    public static string Hex4(int v) => "0x" + v.ToString("x4", CultureInfo.InvariantCulture) + "\n";

    /// <summary>A function directory with the attributes every function has; <paramref name="parent"/> nests it below a bridge.</summary>
    public string Function(string address, int vendor, int device, uint classCode, string? parent = null, int revision = 0,
        int subsystemVendor = 0, int subsystemDevice = 0, string? resource = null)
    {
        string dir = parent is null ? $"devices/pci0000:00/{address}" : $"{FunctionDir(parent)}/{address}";
        Directory.CreateDirectory(Full(dir));
        Write($"{dir}/vendor", Hex4(vendor));
        Write($"{dir}/device", Hex4(device));
        Write($"{dir}/subsystem_vendor", Hex4(subsystemVendor));
        Write($"{dir}/subsystem_device", Hex4(subsystemDevice));
        Write($"{dir}/class", "0x" + classCode.ToString("x6", CultureInfo.InvariantCulture) + "\n");
        Write($"{dir}/revision", "0x" + revision.ToString("x2", CultureInfo.InvariantCulture) + "\n");
        Write($"{dir}/driver_override", "(null)\n");
        Write($"{dir}/numa_node", "-1\n");
        Write($"{dir}/resource", resource ?? string.Concat(Enumerable.Repeat("0x0000000000000000 0x0000000000000000 0x0000000000000000\n", 13)));
        Link($"bus/pci/devices/{address}", dir);
        return dir;
    }

    /// <summary>The function's real directory (below devices/), resolved through its bus/pci/devices link.</summary>
    public string FunctionDir(string address)
    {
        string link = Full($"bus/pci/devices/{address}");
        string target = new FileInfo(link).LinkTarget ?? throw new InvalidOperationException($"{address} is not in the tree");
        return Path.GetRelativePath(Sys, Path.GetFullPath(Path.Combine(Path.GetDirectoryName(link)!, target)));
    }

    public void Bind(string address, string driver)
    {
        Directory.CreateDirectory(Full($"bus/pci/drivers/{driver}"));
        Link($"{FunctionDir(address)}/driver", $"bus/pci/drivers/{driver}");
    }

    public void Group(string address, int group, string type = "DMA")
    {
        string g = $"kernel/iommu_groups/{group.ToString(CultureInfo.InvariantCulture)}";
        Directory.CreateDirectory(Full($"{g}/devices"));
        Write($"{g}/type", type + "\n");
        Link($"{g}/devices/{address}", FunctionDir(address));
        Link($"{FunctionDir(address)}/iommu_group", g);
    }

    /// <summary>A subordinate bus directory, as the kernel creates below bridges (header type 1/2).</summary>
    public void SubordinateBus(string address, string bus) => Directory.CreateDirectory(Full($"{FunctionDir(address)}/pci_bus/{bus}"));

    public void Attr(string address, string name, string text) => Write($"{FunctionDir(address)}/{name}", text);

    public void Write(string relative, string text)
    {
        string full = Full(relative);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, text);
    }

    /// <summary>A relative symlink at <paramref name="relative"/> to <paramref name="target"/> (both relative to the sysfs root).</summary>
    public void Link(string relative, string target)
    {
        string full = Full(relative);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.CreateSymbolicLink(full, Path.GetRelativePath(Path.GetDirectoryName(full)!, Full(target)));
    }

    public void ProcFile(string relative, string text)
    {
        string full = Path.Combine(Proc, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, text);
    }

    public void DevNode(string relative)
    {
        string full = Path.Combine(Dev, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, "");
    }

    public string Full(string relative) => Path.Combine(Sys, relative);

    public HostContext Context(string? pciIds = null, bool root = true, bool vfioAvailable = true, ISysfs? sysfs = null) => new()
    {
        Sysfs = sysfs ?? new LinuxSysfs(Sys),
        Procfs = new LinuxProcfs(Proc),
        Devfs = new LinuxDevfs(Dev),
        Modules = new KnownModules(vfioAvailable ? ["vfio_pci"] : []),
        Identity = new FixedIdentity(root),
        PciIdsPath = pciIds,
    };

    public void Dispose()
    {
        try { Directory.Delete(Base, recursive: true); }
        catch (IOException) { }
    }
}

/// <summary>Module availability from a fixed list (the production seam reads /lib/modules of the running kernel).</summary>
internal sealed class KnownModules(IReadOnlyList<string> modules) : IKernelModules
{
    public string? Load(string module) => IsAvailable(module) ? null : $"module {module} not found";
    public bool IsAvailable(string module) => modules.Contains(Modprobe.ModuleName(module));
}

internal sealed class FixedIdentity(bool root) : IHostIdentity
{
    public bool IsRoot { get; } = root;
}

/// <summary>Counts every sysfs access by path (thread-safe), to hold the inventory to "each file once, one listing per function".</summary>
internal sealed class CountingSysfs(ISysfs inner) : ISysfs
{
    public Dictionary<string, int> Reads { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, int> Lists { get; } = new(StringComparer.Ordinal);
    public List<string> Misses { get; } = [];

    public string Root => inner.Root;
    public bool Exists(string path) { Count(Reads, path); return inner.Exists(path); }
    public string? ReadText(string path) { Count(Reads, path); return Miss(path, inner.ReadText(path)); }
    public string? ReadLink(string path) { Count(Reads, path); return Miss(path, inner.ReadLink(path)); }
    public string? Resolve(string path) { Count(Reads, path); return inner.Resolve(path); }
    public IReadOnlyList<string> List(string path) { Count(Lists, path); return inner.List(path); }
    public void Write(string path, string value, TimeSpan timeout) => throw new InvalidOperationException($"The inventory must not write ({path}).");

    private string? Miss(string path, string? value)
    {
        if (value is null) lock (Misses) Misses.Add(path);
        return value;
    }

    private static void Count(Dictionary<string, int> map, string path)
    {
        lock (map) map[path] = map.GetValueOrDefault(path) + 1;  // the inventory reads functions in parallel on big hosts
    }
}
