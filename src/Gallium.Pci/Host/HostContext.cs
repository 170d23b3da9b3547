using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Host;

/// <summary>Everything the core needs from the host, behind seams: the kernel (sysfs, procfs, /dev, modules), who we run
/// as, and where persistent state lives. Production builds it from the environment; tests build it over a simulated kernel.</summary>
public sealed record HostContext
{
    public required ISysfs Sysfs { get; init; }
    public required IProcfs Procfs { get; init; }
    public required IDevfs Devfs { get; init; }
    public required IKernelModules Modules { get; init; }
    public required IHostIdentity Identity { get; init; }
    /// <summary>The system pci.ids database; null when none is installed (names then stay empty, as lspci -n).</summary>
    public string? PciIdsPath { get; init; }
    /// <summary>Where the persisted passthrough records, the boot-time apply script and the host lock live.</summary>
    public HostPaths Paths { get; init; } = HostPaths.Default;
    /// <summary>The initramfs generator (initramfs-tools or dracut): lists images and regenerates them (REFERENCE §8.2).</summary>
    public IInitramfsTool Initramfs { get; init; } = new SystemInitramfsTool();
    /// <summary>How long a single kernel write that may block (unbind) is given before it is reported as ETIMEDOUT.</summary>
    public TimeSpan WriteTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>This host's libvirt, used when a command is given no -Uri: the real one (LIBVIRT_DEFAULT_URI, else
    /// qemu:///system), or a simulated host's own libvirt test driver.</summary>
    public ILibvirtConnector Libvirt { get; init; } = LibvirtConnector.Instance;

    /// <summary>Environment variables that point the module at another tree (a captured host, a simulated kernel).</summary>
    public const string SysfsRootVariable = "GALLIUM_SYSFS_ROOT";
    public const string ProcRootVariable = "GALLIUM_PROC_ROOT";
    public const string DevRootVariable = "GALLIUM_DEV_ROOT";
    public const string PciIdsVariable = "GALLIUM_PCI_IDS";
    public const string StateRootVariable = "GALLIUM_STATE_ROOT";

    public static HostContext FromEnvironment()
    {
        static string Env(string name, string fallback)
        {
            string? v = Environment.GetEnvironmentVariable(name);
            return string.IsNullOrWhiteSpace(v) ? fallback : v;
        }
        string? stateRoot = Environment.GetEnvironmentVariable(StateRootVariable);
        var procfs = new LinuxProcfs(Env(ProcRootVariable, "/proc"));
        return new HostContext
        {
            Sysfs = new LinuxSysfs(Env(SysfsRootVariable, "/sys")),
            Procfs = procfs,
            Devfs = new LinuxDevfs(Env(DevRootVariable, "/dev")),
            Modules = new Modprobe(procfs),
            Identity = new ProcessIdentity(),
            PciIdsPath = PciIdsLocator.Find(Environment.GetEnvironmentVariable(PciIdsVariable)),
            Paths = string.IsNullOrWhiteSpace(stateRoot) ? HostPaths.Default : HostPaths.Under(stateRoot),
        };
    }
}

/// <summary>Host paths for persisted state (REFERENCE §3.3: overrides do not survive a reboot, so we persist them), and
/// the boot tools' directories the early stages are installed in (REFERENCE §8.1, §8.2).</summary>
public sealed record HostPaths(string ConfigDirectory, string UdevRulesDirectory, string LockDirectory, string LibexecDirectory)
{
    public static HostPaths Default { get; } = new("/etc/gallium", "/etc/udev/rules.d", "/run/gallium", "/usr/local/libexec/gallium");

    /// <summary>machine-id(5): the host identity the output objects carry (<see cref="HostId"/>).</summary>
    public string MachineIdFile { get; init; } = "/etc/machine-id";
    /// <summary>systemd's admin unit directory: the early boot unit goes here when it exists.</summary>
    public string SystemdUnitDirectory { get; init; } = "/etc/systemd/system";
    /// <summary>initramfs-tools' configuration (hooks/, scripts/): the hook goes here when it exists (the package is installed).</summary>
    public string InitramfsToolsDirectory { get; init; } = "/etc/initramfs-tools";
    /// <summary>dracut's module directory: the dracut module goes here when it exists.</summary>
    public string DracutModulesDirectory { get; init; } = "/usr/lib/dracut/modules.d";
    /// <summary>driverctl's records (<c>pci-&lt;bdf&gt;</c> holding a driver name, REFERENCE §4.2).</summary>
    public string DriverctlDirectory { get; init; } = "/etc/driverctl.d";
    /// <summary>Where the initramfs images are (initrd.img-&lt;release&gt;).</summary>
    public string BootDirectory { get; init; } = "/boot";

    /// <summary>The same layout below another root (a test's temp directory, a guest's persistent disk).</summary>
    public static HostPaths Under(string root) => new(
        Path.Combine(root, "etc/gallium"), Path.Combine(root, "etc/udev/rules.d"),
        Path.Combine(root, "run/gallium"), Path.Combine(root, "usr/local/libexec/gallium"))
    {
        MachineIdFile = Path.Combine(root, "etc/machine-id"),
        SystemdUnitDirectory = Path.Combine(root, "etc/systemd/system"),
        InitramfsToolsDirectory = Path.Combine(root, "etc/initramfs-tools"),
        DracutModulesDirectory = Path.Combine(root, "usr/lib/dracut/modules.d"),
        DriverctlDirectory = Path.Combine(root, "etc/driverctl.d"),
        BootDirectory = Path.Combine(root, "boot"),
    };
}

public static class PciIdsLocator
{
    private static readonly string[] Candidates =
        ["/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids", "/usr/share/misc/pci.ids.gz"];

    public static string? Find(string? preferred)
    {
        if (!string.IsNullOrWhiteSpace(preferred)) return File.Exists(preferred) ? preferred : null;
        return Candidates.FirstOrDefault(File.Exists);
    }
}
