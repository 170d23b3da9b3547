using System.Reflection;
using Gallium.Pci.Host;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Passthrough;

namespace Gallium.Pci.Testing;

/// <summary>The ready-made hosts of New-GalliumSimulatedHost.</summary>
public enum SimulatedHostPreset
{
    /// <summary>An Intel workstation with the IOMMU on: an RTX 4090 and its audio function, an H100, on-board VGA running the
    /// console, an X710 with four VFs, two e1000e NICs (one carries the default route), a PCIe-to-PCI bridge group, an NVMe
    /// boot disk (<see cref="StandardHost"/>). Nothing is enabled; VMs win11 (UEFI) and web1 (SeaBIOS), stopped, no devices.</summary>
    Workstation,
    /// <summary>The workstation with intel_iommu=off on the kernel command line: no IOMMU groups, passthrough impossible.</summary>
    IommuOff,
    /// <summary>A two-socket GPU server with four H100s (<see cref="GpuServerHost"/>): Gpu2 is enabled for passthrough and free,
    /// Gpu3 is enabled and held by VM train-01 (without the large-BAR fix, so Repair-GalliumVmPciDevice has work); train-02
    /// is a stopped VM with no devices.</summary>
    GpuServer,
}

/// <summary>A simulated host for a Pester suite: a kernel-shaped tree whose writes the simulated kernel interprets as Linux
/// does, the module's records and udev rules kept below it, and its own libvirt (libvirt's test driver, see
/// <see cref="SimulatedLibvirt"/>). <see cref="Context"/> is what the GalliumHostContext session variable holds so that every
/// Gallium command works on this host instead of the real one. Dispose it (AfterAll) to delete the tree; a host left
/// undisposed is deleted when the process exits.</summary>
public sealed class SimulatedHost : IDisposable
{
    private readonly SimulatedLibvirt? _libvirt;
    private readonly EventHandler _onExit;
    private bool _disposed;

    private SimulatedHost(SimulatedHostPreset preset, SimulatedKernel kernel, HostContext context, SimulatedLibvirt? libvirt,
        IReadOnlyDictionary<string, string> functions)
    {
        Preset = preset;
        Kernel = kernel;
        Context = context;
        _libvirt = libvirt;
        Functions = functions;
        _onExit = (_, _) => Dispose();
        AppDomain.CurrentDomain.ProcessExit += _onExit;
    }

    public SimulatedHostPreset Preset { get; }
    /// <summary>The simulated kernel: what each device is bound to (DriverOf, OverrideOf, GroupOf), fault injection (FailWrite,
    /// FailWhere, HoldDevice), every write the commands made (Writes).</summary>
    public SimulatedKernel Kernel { get; }
    /// <summary>The host the commands use when it is in the GalliumHostContext variable.</summary>
    public HostContext Context { get; }
    /// <summary>The folder holding sys/, proc/, dev/, state/ (records and udev rules) and libvirt/ (the test driver's file).</summary>
    public string RootDirectory => Kernel.RootDirectory;
    /// <summary>The libvirt the VM commands use when they are given no -Uri.</summary>
    public string LibvirtUri => Context.Libvirt.DefaultUri;
    /// <summary>Whether the commands run as root on this host.</summary>
    public bool IsRoot => Context.Identity.IsRoot;
    /// <summary>The preset's functions by role ("Gpu", "GpuAudio", "FreeNic", ... or "Gpu0".."Gpu3", "Nic0", ...): their addresses.</summary>
    public IReadOnlyDictionary<string, string> Functions { get; }
    /// <summary>Names of the VMs the host's libvirt has now.</summary>
    public IReadOnlyList<string> VmNames
    {
        get
        {
            using var libvirt = Context.Libvirt.Open(null, readOnly: true);
            return libvirt.ListDomains().Select(d => d.Name).Order(StringComparer.Ordinal).ToArray();
        }
    }

    /// <summary>The bound driver of a function (null when none): shorthand for Kernel.DriverOf.</summary>
    public string? DriverOf(string address) => Kernel.DriverOf(address);

    /// <summary>Defines another stopped VM in this host's libvirt: q35, OVMF (or SeaBIOS), with four free PCIe root ports.</summary>
    public void DefineVm(string name, bool uefi = true)
    {
        if (_libvirt is null)
            throw new InvalidOperationException($"This host's VMs live in {LibvirtUri}, not in a simulated libvirt: define them there.");
        _libvirt.DefineVm(name, uefi);
    }

    /// <summary>Builds a preset host.</summary>
    /// <param name="root">An empty or missing directory; null for a new one on tmpfs.</param>
    /// <param name="isRoot">Whether the commands run as root (false: every change is refused with RootRequired).</param>
    /// <param name="libvirtUri">Null: the host's own libvirt test driver. A <c>test:///path/file.xml</c> URI: that test-driver
    /// file, held open the same way. Anything else (qemu:///system): opened for real by each command.</param>
    /// <param name="vmNames">More stopped UEFI VMs to define (in a test-driver libvirt: the host's own, or the user's file;
    /// the presets' VMs go only into the host's own).</param>
    public static SimulatedHost Create(SimulatedHostPreset preset, string? root = null, bool isRoot = true, string? libvirtUri = null,
        IEnumerable<string>? vmNames = null)
    {
        root ??= SimulatedHosts.CreateTempRoot();
        var kernel = preset switch
        {
            SimulatedHostPreset.Workstation => SimulatedHosts.Standard(root),
            SimulatedHostPreset.IommuOff => SimulatedHosts.IommuOff(root),
            SimulatedHostPreset.GpuServer => SimulatedHosts.GpuServer(root),
            _ => throw new ArgumentOutOfRangeException(nameof(preset), preset, "Not a preset."),
        };
        SimulatedLibvirt? libvirt = null;
        SimulatedHost? host = null;
        try
        {
            ILibvirtConnector connector;
            bool ownLibvirt = libvirtUri is null;
            if (libvirtUri is null) connector = libvirt = SimulatedLibvirt.Open(Path.Combine(root, "libvirt", "node.xml"));
            else if (TestDriverFile(libvirtUri) is { } file) connector = libvirt = SimulatedLibvirt.Open(file);
            else connector = new FixedUri(libvirtUri);
            // The preset's state is made as root, whoever the commands run as afterwards.
            var asRoot = kernel.CreateContext(true) with { Libvirt = connector };
            var context = isRoot ? asRoot : asRoot with { Identity = kernel.CreateContext(false).Identity };
            var functions = preset == SimulatedHostPreset.GpuServer ? Roles(typeof(GpuServerHost)) : Roles(typeof(StandardHost));
            host = new SimulatedHost(preset, kernel, context, libvirt, functions);
            host.Furnish(asRoot, ownLibvirt, vmNames ?? []);
            return host;
        }
        catch
        {
            if (host is not null) host.Dispose();
            else
            {
                libvirt?.Dispose();
                kernel.DeleteTree();
            }
            throw;
        }
    }

    /// <summary>Deletes the tree and closes the host's libvirt (its VMs are gone).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        AppDomain.CurrentDomain.ProcessExit -= _onExit;
        _libvirt?.Dispose();
        Kernel.DeleteTree();
    }

    public override string ToString() => $"{Preset} at {RootDirectory} (libvirt {LibvirtUri})";

    // The preset's starting state, reached through the module's own planner and runner (so records, udev rules and the
    // kernel agree exactly as after a real Enable), and its VMs when the libvirt is the host's own (a test-driver file of
    // the user's has the VMs the user put in it).
    private void Furnish(HostContext asRoot, bool ownLibvirt, IEnumerable<string> vmNames)
    {
        IEnumerable<(string Name, bool Uefi)> presetVms = ownLibvirt ? PresetVms(Preset) : [];
        if (_libvirt is not null)
        {
            foreach (var (name, uefi) in presetVms) _libvirt.DefineVm(name, uefi, memoryGiB: Preset == SimulatedHostPreset.GpuServer ? 64 : 16);
            foreach (string name in vmNames) _libvirt.DefineVm(name);
        }
        if (Preset != SimulatedHostPreset.GpuServer) return;
        var planner = new PassthroughPlanner(asRoot, new NoVms());
        var runner = new PlanRunner(asRoot);
        foreach (string gpu in new[] { GpuServerHost.Gpu2, GpuServerHost.Gpu3 }) runner.Run(planner.PlanEnable(PciAddress.Parse(gpu)));
        if (_libvirt is not null && ownLibvirt)
        {
            using var session = _libvirt.Open(null);
            session.AttachDeviceToConfig(GpuServerHost.TrainingVm, DomainXml.BuildHostdev(PciAddress.Parse(GpuServerHost.Gpu3)));
        }
        Kernel.ResetCounters();
    }

    private static IEnumerable<(string Name, bool Uefi)> PresetVms(SimulatedHostPreset preset) => preset == SimulatedHostPreset.GpuServer
        ? [(GpuServerHost.TrainingVm, true), (GpuServerHost.SpareVm, true)]
        : [("win11", true), ("web1", false)];

    private static string? TestDriverFile(string uri) =>
        System.Uri.TryCreate(uri, UriKind.Absolute, out var u) && u.Scheme == "test" && u.Host.Length == 0 && u.AbsolutePath != "/default"
            ? System.Uri.UnescapeDataString(u.AbsolutePath) : null;

    private static Dictionary<string, string> Roles(Type constants) => constants
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Where(f => f.IsLiteral && f.FieldType == typeof(string) && PciAddress.TryParse((string)f.GetRawConstantValue()!, out _))
        .ToDictionary(f => f.Name, f => (string)f.GetRawConstantValue()!, StringComparer.OrdinalIgnoreCase);

    /// <summary>A real libvirt named by the user: each command opens its own connection.</summary>
    private sealed class FixedUri(string uri) : ILibvirtConnector
    {
        public string DefaultUri { get; } = Pci.Libvirt.LibvirtUri.Resolve(uri);
        public string SystemUri => DefaultUri;   // the user said this libvirt holds the simulated host's VMs
        public ILibvirt Open(string? uri, bool readOnly = false) => LibvirtConnection.Open(uri ?? DefaultUri, readOnly);
    }

    private sealed class NoVms : IAssignmentLookup
    {
        public IReadOnlyList<string> VmsReferencing(IReadOnlyCollection<PciAddress> addresses) => [];
    }
}
