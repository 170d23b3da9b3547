using Gallium.Pci.Host;
using Gallium.Pci.Testing.Internal;

namespace Gallium.Pci.Testing;

/// <summary>A Linux kernel simulated over a real directory tree laid out like <c>/sys</c>, <c>/proc</c> and <c>/dev</c>.
/// Reads go to the files (through the production <see cref="LinuxSysfs"/>); writes are interpreted the way kernel 6.1
/// does (REFERENCE §3.3, §3.6, §4.5, §4.6) and the tree is updated to match. Build one with <see cref="HostTopology"/>
/// or <see cref="SimulatedHosts"/>. Thread-safe; all state changes happen under one lock.</summary>
public sealed partial class SimulatedKernel : ISysfs, IProcfs, IDevfs, IKernelModules, IHostIdentity
{
    /// <summary>VF BARs of every simulated SR-IOV PF: (index, size per VF); 64-bit prefetchable, as on Intel 700-series.</summary>
    internal static readonly (int Index, ulong Size)[] VfBars = [(0, 0x10000UL), (3, 0x4000UL)];

    private readonly object _gate = new();
    private readonly Tree _tree;
    private readonly KernelConfig _config;
    private readonly List<SimDevice> _devices;
    private readonly Dictionary<string, SimDevice> _byBdf = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SimDevice> _byDir = new(StringComparer.Ordinal);
    private readonly List<SimDriver> _drivers;
    private readonly HashSet<string> _loadedModules = new(StringComparer.Ordinal);
    private readonly List<string> _moduleOrder = [];
    private readonly SortedSet<int> _groupIds = [];
    private readonly LinuxSysfs _sysView;
    private readonly LinuxProcfs _procView;
    private readonly LinuxDevfs _devView;
    private readonly string _sysReal;

    private readonly List<KernelWrite> _writes = [];
    private long _reads;
    private long _writeCount;

    private readonly List<CountdownFault> _countdowns = [];
    private readonly List<SuffixFault> _suffixFaults = [];
    private readonly HashSet<string> _held = new(StringComparer.Ordinal);
    private readonly HashSet<int> _claimedGroups = [];
    private readonly Dictionary<string, string> _wrongDriver = new(StringComparer.Ordinal);

    internal SimulatedKernel(string root, KernelConfig config, List<SimDevice> devices, List<SimDriver> drivers)
    {
        RootDirectory = root;
        _tree = new Tree(root);
        _config = config;
        _devices = devices;
        _drivers = drivers;
        foreach (var d in devices) { _byBdf[d.Bdf] = d; _byDir[d.RelDir] = d; }
        Directory.CreateDirectory(SysfsRoot);
        Directory.CreateDirectory(ProcRoot);
        Directory.CreateDirectory(DevRoot);
        Directory.CreateDirectory(StateRoot);
        _sysReal = Tree.RealPath(SysfsRoot) ?? SysfsRoot;
        _sysView = new LinuxSysfs(SysfsRoot);
        _procView = new LinuxProcfs(ProcRoot);
        _devView = new LinuxDevfs(DevRoot);
        lock (_gate) Materialize();
        // A host identity of its own (HostId): devices read here are told apart from another simulated or real host's.
        MachineId = Guid.NewGuid().ToString("n");
        HostName = "simhost-" + MachineId[..8];
        _tree.Text("state/etc/machine-id", MachineId + "\n");
        _tree.Text("proc/sys/kernel/hostname", HostName + "\n");
    }

    /// <summary>This simulated host's machine-id (state/etc/machine-id, the file <see cref="HostPaths.Under"/> names).</summary>
    public string MachineId { get; }
    /// <summary>This simulated host's name (proc/sys/kernel/hostname).</summary>
    public string HostName { get; }

    // ---- where things are -----------------------------------------------------------------------------------------

    /// <summary>The directory holding sys/, proc/, dev/ and state/.</summary>
    public string RootDirectory { get; }
    public string SysfsRoot => RootDirectory + "/sys";
    public string ProcRoot => RootDirectory + "/proc";
    public string DevRoot => RootDirectory + "/dev";
    /// <summary>Root for <see cref="HostPaths.Under"/>: the module's persisted records, udev rules and lock go below it.</summary>
    public string StateRoot => RootDirectory + "/state";

    /// <summary>The sysfs root (ISysfs.Root).</summary>
    public string Root => SysfsRoot;
    string IProcfs.Root => ProcRoot;
    string IDevfs.Root => DevRoot;

    /// <summary>This kernel as each seam (convenient from PowerShell, where explicit interface members are awkward).</summary>
    public ISysfs Sysfs => this;
    public IProcfs Procfs => this;
    public IDevfs Devfs => this;
    public IKernelModules Modules => this;
    public IHostIdentity Identity => this;

    /// <summary>IHostIdentity.IsRoot when the kernel itself is used as the identity seam.</summary>
    public bool IsRoot { get; set; } = true;

    /// <summary>A HostContext over this kernel: system pci.ids when installed, state under <see cref="StateRoot"/>.</summary>
    public HostContext CreateContext() => CreateContext(true);

    public HostContext CreateContext(bool isRoot) => new()
    {
        Sysfs = this, Procfs = this, Devfs = this, Modules = this, Identity = new FixedIdentity(isRoot),
        PciIdsPath = PciIdsLocator.Find(null),
        Paths = HostPaths.Under(StateRoot),
    };

    private sealed record FixedIdentity(bool IsRoot) : IHostIdentity;

    /// <summary>Deletes the whole tree (<see cref="RootDirectory"/>); the kernel is unusable afterwards.</summary>
    public void DeleteTree()
    {
        lock (_gate)
        {
            if (Directory.Exists(RootDirectory)) Directory.Delete(RootDirectory, recursive: true);
        }
    }

    // ---- ISysfs reads (counted) -------------------------------------------------------------------------------------

    public bool Exists(string path) { Interlocked.Increment(ref _reads); return _sysView.Exists(path); }
    public string? ReadText(string path) { Interlocked.Increment(ref _reads); return _sysView.ReadText(path); }
    public string? ReadLink(string path) { Interlocked.Increment(ref _reads); return _sysView.ReadLink(path); }
    public string? Resolve(string path) { Interlocked.Increment(ref _reads); return _sysView.Resolve(path); }
    public IReadOnlyList<string> List(string path) { Interlocked.Increment(ref _reads); return _sysView.List(path); }

    // ---- IProcfs / IDevfs -------------------------------------------------------------------------------------------

    string? IProcfs.ReadText(string path) => ReadProc(path);
    bool IDevfs.Exists(string path) => DevExists(path);
    /// <summary>A file under proc/ (e.g. "cmdline", "self/mountinfo", "net/route"); null when missing.</summary>
    public string? ReadProc(string path) => _procView.ReadText(path);
    /// <summary>Whether a node exists under dev/ (e.g. "vfio/vfio", "vfio/12").</summary>
    public bool DevExists(string path) => _devView.Exists(path);

    // ---- observation ------------------------------------------------------------------------------------------------

    /// <summary>ISysfs reads (Exists, ReadText, ReadLink, Resolve, List) since creation or <see cref="ResetCounters"/>.</summary>
    public long ReadCount => Interlocked.Read(ref _reads);
    /// <summary>ISysfs.Write calls since creation or <see cref="ResetCounters"/>, failed ones included.</summary>
    public long WriteCount => Interlocked.Read(ref _writeCount);

    /// <summary>Every write in order (path, resolved path, value, errno or 0).</summary>
    public IReadOnlyList<KernelWrite> Writes
    {
        get { lock (_gate) return _writes.ToArray(); }
    }

    /// <summary>Zeroes <see cref="ReadCount"/> and <see cref="WriteCount"/> and clears <see cref="Writes"/>; armed faults stay.</summary>
    public void ResetCounters()
    {
        lock (_gate)
        {
            Interlocked.Exchange(ref _reads, 0);
            Interlocked.Exchange(ref _writeCount, 0);
            _writes.Clear();
        }
    }

    /// <summary>Every device's driver and override, and the /dev/vfio nodes, now.</summary>
    public KernelSnapshot Snapshot()
    {
        lock (_gate)
        {
            var devices = _devices.OrderBy(d => d.Address).Select(d => new DeviceSnapshot(d.Bdf, DriverOf(d), OverrideOf(d))).ToArray();
            var nodes = _tree.Names("dev/vfio").Order(StringComparer.Ordinal).ToArray();
            return new KernelSnapshot(devices, nodes);
        }
    }

    // ---- queries for assertions (not counted as reads) -------------------------------------------------------------

    /// <summary>Addresses of every PCI function (VFs included), ordered.</summary>
    public IReadOnlyList<string> DeviceAddresses
    {
        get { lock (_gate) return _devices.OrderBy(d => d.Address).Select(d => d.Bdf).ToArray(); }
    }

    /// <summary>The bound driver's name, or null when unbound.</summary>
    public string? DriverOf(string bdf) { lock (_gate) return DriverOf(Device(bdf)); }
    /// <summary>The driver_override, or null when it reads "(null)".</summary>
    public string? OverrideOf(string bdf) { lock (_gate) return OverrideOf(Device(bdf)); }
    /// <summary>The IOMMU group number, or null when the device has none (IOMMU off).</summary>
    public int? GroupOf(string bdf) { lock (_gate) return GroupOf(Device(bdf)); }
    /// <summary>Members of an IOMMU group, ordered; empty when there is no such group.</summary>
    public IReadOnlyList<string> GroupMembers(int group) { lock (_gate) return Members(group); }
    /// <summary>IOMMU group numbers, ascending.</summary>
    public IReadOnlyList<int> Groups { get { lock (_gate) return GroupIds().Order().ToArray(); } }
    /// <summary>The device directory relative to the sysfs root, e.g. devices/pci0000:00/0000:00:01.0/0000:01:00.0.</summary>
    public string DevicePath(string bdf) { lock (_gate) return Device(bdf).RelDir; }
    /// <summary>For an SR-IOV VF, its PF's address; else null.</summary>
    public string? PhysicalFunctionOf(string bdf) { lock (_gate) return Device(bdf).PhysFn?.Bdf; }
    /// <summary>sriov_numvfs of a PF (0 for other functions).</summary>
    public int NumVfs(string bdf) { lock (_gate) return NumVfs(Device(bdf)); }
    /// <summary>Names of loaded PCI drivers (their sys/bus/pci/drivers directories exist), in registration order.</summary>
    public IReadOnlyList<string> LoadedDrivers { get { lock (_gate) return _drivers.Where(d => d.Loaded).Select(d => d.Name).ToArray(); } }
    /// <summary>Whether a module is loaded (sys/module/NAME exists); '-' and '_' are the same.</summary>
    public bool IsModuleLoaded(string module) { lock (_gate) return _loadedModules.Contains(KernelConfig.Normalize(module)); }

    // ---- fault injection --------------------------------------------------------------------------------------------

    /// <summary>The <paramref name="n"/>-th write from now (1 = the next) fails with <paramref name="errno"/> and changes nothing.</summary>
    public void FailWrite(int n, int errno)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), "n counts writes from 1.");
        lock (_gate) _countdowns.Add(new CountdownFault { Remaining = n, Errno = errno });
    }

    /// <summary>The next write whose path (as written, or resolved) ends with <paramref name="pathSuffix"/> fails with <paramref name="errno"/>.</summary>
    public void FailWhere(string pathSuffix, int errno) => FailWhere(pathSuffix, errno, 1);

    /// <summary>The <paramref name="occurrence"/>-th such write from now fails with <paramref name="errno"/> and changes nothing.</summary>
    public void FailWhere(string pathSuffix, int errno, int occurrence)
    {
        if (occurrence < 1) throw new ArgumentOutOfRangeException(nameof(occurrence), "occurrence counts from 1.");
        lock (_gate) _suffixFaults.Add(new SuffixFault { Suffix = pathSuffix, Remaining = occurrence, Errno = errno });
    }

    /// <summary>Unbinding this device blocks, as when a VM holds a vfio-pci device (REFERENCE §4.6): the write fails with
    /// ETIMEDOUT after min(timeout, 50 ms) and the device stays bound.</summary>
    public void HoldDevice(string bdf) { lock (_gate) _held.Add(Device(bdf).Bdf); }
    public void ReleaseDevice(string bdf) { lock (_gate) _held.Remove(Device(bdf).Bdf); }

    /// <summary>Userspace (QEMU) owns the group's DMA (REFERENCE §4.5): binding a DMA-API driver to a member fails (bind EBUSY,
    /// drivers_probe EINVAL) and unbinding a vfio-pci member blocks.</summary>
    public void ClaimGroup(int group) { lock (_gate) _claimedGroups.Add(group); }
    public void ReleaseGroup(int group) { lock (_gate) _claimedGroups.Remove(group); }

    /// <summary>The next probe of this device (drivers_probe, bind, new_id, module load) binds <paramref name="driver"/> instead.</summary>
    public void WrongDriverOnProbe(string bdf, string driver) { lock (_gate) _wrongDriver[Device(bdf).Bdf] = driver; }

    /// <summary>Load of this module returns <paramref name="reason"/> (libvirt: "administratively prohibited").</summary>
    public void FailModuleLoad(string module, string reason) { lock (_gate) _config.LoadFailures[KernelConfig.Normalize(module)] = reason; }

    public void SetModuleAvailable(string module, bool available)
    {
        lock (_gate)
        {
            if (available) _config.UnavailableModules.Remove(KernelConfig.Normalize(module));
            else _config.UnavailableModules.Add(KernelConfig.Normalize(module));
        }
    }

    /// <summary>The writing process dies right after the <paramref name="n"/>-th successful write from now: the write is
    /// made, then <see cref="SimulatedProcessDeathException"/> unwinds the writer, which (like SIGKILL or the OOM killer)
    /// gets to run no undo. Only what the kernel and the disk already hold is left, for the next command to find.</summary>
    public void DieAfterWrite(int n)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), "n counts writes from 1.");
        lock (_gate) _dieAfter = n;
    }

    /// <summary>The <paramref name="n"/>-th successful write from now returns only once <paramref name="release"/> is set,
    /// after setting <paramref name="reached"/>: a test can stop the command (PowerShell.Stop()) while it is mid-change.</summary>
    public void PauseAfterWrite(int n, ManualResetEventSlim reached, ManualResetEventSlim release)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), "n counts writes from 1.");
        lock (_gate) _pause = (n, reached, release);
    }

    private int _dieAfter;
    private (int Remaining, ManualResetEventSlim Reached, ManualResetEventSlim Release)? _pause;

    /// <summary>Runs outside the kernel's lock after each successful write: the death and pause faults.</summary>
    private void AfterWrite()
    {
        bool die = false;
        (ManualResetEventSlim Reached, ManualResetEventSlim Release)? pause = null;
        lock (_gate)
        {
            if (_dieAfter > 0 && --_dieAfter == 0) die = true;
            if (_pause is { } p)
            {
                if (p.Remaining <= 1) { pause = (p.Reached, p.Release); _pause = null; }
                else _pause = (p.Remaining - 1, p.Reached, p.Release);
            }
        }
        if (pause is { } wait)
        {
            wait.Reached.Set();
            wait.Release.Wait();
        }
        if (die) throw new SimulatedProcessDeathException();
    }

    /// <summary>Disarms every fault: pending write failures, held devices, claimed groups, wrong drivers, module failures.</summary>
    public void ClearFaults()
    {
        lock (_gate)
        {
            _countdowns.Clear(); _suffixFaults.Clear(); _held.Clear(); _claimedGroups.Clear(); _wrongDriver.Clear();
            _config.LoadFailures.Clear();
            _dieAfter = 0;
            _pause = null;
        }
    }

    private sealed class CountdownFault { public int Remaining; public int Errno; }
    private sealed class SuffixFault { public required string Suffix; public int Remaining; public int Errno; }

    // ---- modules ----------------------------------------------------------------------------------------------------

    /// <summary>True when the kernel has the module (a known driver module or a vfio/kvm module) and it was not made unavailable.</summary>
    public bool IsAvailable(string module)
    {
        string m = KernelConfig.Normalize(module);
        lock (_gate)
        {
            if (_config.UnavailableModules.Contains(m)) return false;
            return _drivers.Any(d => d.Module == m) || DriverCatalog.OtherModules.Contains(m);
        }
    }

    /// <summary>modprobe: loads the module and what it depends on, registers its drivers (which then bind every unbound device
    /// they match, including devices whose override names them — REFERENCE §4.6 TEST A). Null on success, else the reason.</summary>
    public string? Load(string module)
    {
        string m = KernelConfig.Normalize(module);
        lock (_gate)
        {
            if (_config.LoadFailures.TryGetValue(m, out var reason)) return reason;
            if (_config.UnavailableModules.Contains(m) || !(_drivers.Any(d => d.Module == m) || DriverCatalog.OtherModules.Contains(m)))
                return $"modprobe: FATAL: Module {module} not found in directory /lib/modules/{_config.Release}";
            if (_loadedModules.Contains(m)) return null;
            var registered = new List<SimDriver>();
            foreach (var dep in DriverCatalog.DependenciesOf(m)) LoadModuleFiles(dep, registered);
            LoadModuleFiles(m, registered);
            WriteProcModules();
            foreach (var driver in registered) DriverAttach(driver);
            return null;
        }
    }

    // ---- helpers ----------------------------------------------------------------------------------------------------

    private SimDevice Device(string bdf)
    {
        var address = PciAddress.Parse(bdf);
        return _byBdf.TryGetValue(address.ToString(), out var d) ? d : throw new PciDeviceNotFoundException(address);
    }

    private string? DriverOf(SimDevice d) => _tree.LinkName($"sys/{d.RelDir}/driver");

    private string? OverrideOf(SimDevice d)
    {
        string? text = _tree.Read($"sys/{d.RelDir}/driver_override")?.TrimEnd('\n');
        return string.IsNullOrEmpty(text) || text == "(null)" ? null : text;
    }

    private int? GroupOf(SimDevice d) =>
        int.TryParse(_tree.LinkName($"sys/{d.RelDir}/iommu_group"), out int g) ? g : null;

    private int NumVfs(SimDevice d) =>
        d.Sriov is null ? 0 : int.TryParse(_tree.Read($"sys/{d.RelDir}/sriov_numvfs")?.Trim(), out int n) ? n : 0;

    private IEnumerable<int> GroupIds() => _groupIds;

    private IReadOnlyList<string> Members(int group) =>
        _tree.Names($"sys/kernel/iommu_groups/{group}/devices").Order(StringComparer.Ordinal).ToArray();

    private SimDriver? LoadedDriver(string name) => _drivers.FirstOrDefault(d => d.Loaded && d.Name == name);
}

/// <summary>Stands in for the writing process being killed (SIGKILL, the OOM killer, power loss) in tests that run the
/// writer in-process. The runner treats OutOfMemoryException as the end of the process — it attempts no undo and leaves
/// its unfinished-change record — which is exactly what a killed process leaves behind.</summary>
public sealed class SimulatedProcessDeathException() : OutOfMemoryException("simulated: the process was killed right after this write");
