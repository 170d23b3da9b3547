using System.Globalization;
using Gallium.Pci.Host;

namespace Gallium.Pci.Passthrough;

/// <summary>Plans Enable (whole IOMMU group to vfio-pci, persisted) and Disable (whole group back to host drivers) from
/// what the kernel shows now. Every refusal is thrown here, before anything changes; the plan's steps carry their undo.
/// Kernel sequence per device: REFERENCE §4.4 (libvirt's order, §4.1): override, unbind, drivers_probe, re-read the link.</summary>
public sealed class PassthroughPlanner
{
    private readonly HostContext _host;
    private readonly IAssignmentLookup _assignments;
    private readonly PciIds? _names;
    private readonly DriverBinder _binder;
    private readonly PassthroughPersistence _persistence;

    /// <param name="names">A shared pci.ids database (descriptions name the devices); by default one over the host's PciIdsPath.</param>
    public PassthroughPlanner(HostContext host, IAssignmentLookup assignments, PciIds? names = null)
    {
        _host = host ?? throw new ArgumentNullException(nameof(host));
        _assignments = assignments ?? throw new ArgumentNullException(nameof(assignments));
        _names = names;
        _binder = new DriverBinder(host);
        _persistence = new PassthroughPersistence(host.Paths);
    }

    /// <summary>Plans moving the IOMMU group of <paramref name="address"/> to vfio-pci. Bridges in the group stay on their
    /// port driver. Refuses (throws) when not root, the IOMMU is off, the device is missing or a bridge, a member is an
    /// SR-IOV PF with VFs enabled, vfio-pci does not exist in this kernel, or (unless <paramref name="allowHostCritical"/>)
    /// the host depends on a member.</summary>
    public PassthroughPlan PlanEnable(PciAddress address, bool allowHostCritical = false)
    {
        var (device, group) = ReadGroupOf(address);
        if (device.IsBridge) throw new PciDeviceIsBridgeException(address, device.Driver);

        var endpoints = group.Devices.Where(d => !d.IsBridge).ToArray();
        var moving = endpoints.Where(d => d.Driver != DriverBinder.VfioPci).ToArray();
        foreach (var d in moving)
        {
            // vfio-pci's probe returns EBUSY for a PF with VFs: the write would "succeed" and leave it driverless (REFERENCE §4.4 step 0).
            if (d.VirtualFunctions.Count > 0) throw new PciDeviceHasVirtualFunctionsException(d.Address, d.VirtualFunctions.Count);
        }
        foreach (var d in endpoints)
        {
            if (!_binder.SupportsOverride(d.Address))
                throw new GalliumException("PciDeviceOverrideUnsupported", ErrorKind.NotEnabled,
                    $"{d.Address} has no driver_override attribute: this kernel is too old (needs 3.16 or later).", d.Address.ToString());
        }
        if (moving.Length > 0 && !_binder.DriverLoaded(DriverBinder.VfioPci) && !_host.Modules.IsAvailable(DriverBinder.VfioPci))
            throw new VfioPciUnavailableException("the running kernel has no vfio-pci module (it is neither built in nor in modules.dep).", address.ToString());

        foreach (var d in endpoints)
        {
            // Two owners would fight at every boot: driverctl's udev rule would set its driver, ours vfio-pci.
            if (_persistence.DriverctlDriver(d.Address) is string other && other != DriverBinder.VfioPci)
                throw new PciDeviceDriverctlOverrideException(d.Address, other, _persistence.DriverctlRecordPath(d.Address));
        }
        var critical = new HostDependencies(_host).Among(moving.Select(d => d.Address));
        if (critical.Count > 0 && !allowHostCritical) throw new PciDeviceHostCriticalException(group.Id, critical);

        var changes = group.Devices.Select(d => d.IsBridge
                ? new DeviceChange(d, DeviceChangeKind.Stays, d.Driver, d.Driver, $"{Describe(d)}: {Stays(d)}")
                : d.Driver == DriverBinder.VfioPci
                    ? new DeviceChange(d, DeviceChangeKind.Stays, d.Driver, d.Driver, $"{Describe(d)}: already on vfio-pci")
                    : new DeviceChange(d, DeviceChangeKind.ToVfioPci, d.Driver, DriverBinder.VfioPci,
                        $"{Describe(d)}: {d.Driver ?? "no driver"} -> vfio-pci"))
            .ToArray();

        var steps = new List<PlanStep>();
        // Every override first: from here on, whichever member is released can only go to vfio-pci (REFERENCE §4.1).
        foreach (var d in endpoints.Where(d => d.DriverOverride != DriverBinder.VfioPci))
            steps.Add(SetOverrideStep(d.Address, DriverBinder.VfioPci, d.DriverOverride));
        foreach (var d in moving)
        {
            if (d.Driver is string from) steps.Add(UnbindStep(d.Address, from, overrideWhileBound: DriverBinder.VfioPci));
            steps.Add(ProbeStep(d.Address));
            steps.Add(VerifyStep(d.Address, $"check that {d.Address} is bound to vfio-pci", now => now == DriverBinder.VfioPci,
                now => now is null
                    ? "vfio-pci's probe failed: no driver is bound (see dmesg)"
                    : $"it came back on {now}, not vfio-pci"));
        }
        if (moving.Length > 0) steps.Add(GroupNodeStep(group.Id));
        steps.AddRange(PersistSteps(endpoints));

        return new PassthroughPlan(PassthroughDirection.Enable, address, group, changes, steps,
            allowHostCritical ? critical : [], StatesOf(group), () => { });
    }

    /// <summary>Plans returning the IOMMU group of <paramref name="address"/> to host drivers: each member on vfio-pci gets
    /// its override cleared, is unbound and re-probed, so it lands on the driver the kernel picks (none if none matches);
    /// the records and udev rules go. Refuses when not root, the IOMMU is off, the device is missing or a bridge, or a VM
    /// definition references any member.</summary>
    public PassthroughPlan PlanDisable(PciAddress address)
    {
        var (device, group) = ReadGroupOf(address);
        if (device.IsBridge) throw new PciDeviceIsBridgeException(address, device.Driver);
        var members = group.Devices.Select(d => d.Address).ToArray();
        void CheckAssignments()
        {
            var vms = _assignments.VmsReferencing(members);
            if (vms.Count > 0) throw new IommuGroupAssignedException(group.Id, vms, address.ToString());
        }
        CheckAssignments();

        var endpoints = group.Devices.Where(d => !d.IsBridge).ToArray();
        bool Releases(PciDevice d) => d.Driver == DriverBinder.VfioPci || d.DriverOverride == DriverBinder.VfioPci;
        var changes = group.Devices.Select(d => !d.IsBridge && Releases(d) && (d.Driver is null or DriverBinder.VfioPci)
                ? new DeviceChange(d, DeviceChangeKind.ToHostDriver, d.Driver, null, $"{Describe(d)}: {d.Driver ?? "no driver"} -> host driver")
                : new DeviceChange(d, DeviceChangeKind.Stays, d.Driver, d.Driver,
                    $"{Describe(d)}: {Stays(d)}"
                    + (!d.IsBridge && d.DriverOverride == DriverBinder.VfioPci ? " (its vfio-pci override is cleared)" : "")))
            .ToArray();

        var steps = new List<PlanStep>();
        foreach (var d in endpoints.Where(Releases).Where(d => d.DriverOverride is not null))
            steps.Add(ClearOverrideStep(d.Address, d.DriverOverride!));
        foreach (var d in endpoints.Where(Releases).Where(d => d.Driver is null or DriverBinder.VfioPci))
        {
            if (d.Driver is string from) steps.Add(UnbindStep(d.Address, from, overrideWhileBound: null));
            steps.Add(ProbeStep(d.Address));
            steps.Add(VerifyStep(d.Address, $"check that {d.Address} left vfio-pci", now => now != DriverBinder.VfioPci,
                _ => "it came back on vfio-pci: a vfio-pci new_id or 'options vfio-pci ids=' matches it; remove that first"));
        }
        foreach (var d in endpoints)
        {
            steps.AddRange(RemoveSteps(d.Address));
        }

        return new PassthroughPlan(PassthroughDirection.Disable, address, group, changes, steps, [], StatesOf(group), CheckAssignments);
    }

    // ---- reading

    private (PciDevice Device, IommuGroup Group) ReadGroupOf(PciAddress address)
    {
        // No root check here: planning only reads, so -WhatIf works unprivileged; PlanRunner refuses before any write.
        var inventory = new DeviceInventory(_host, _names);
        if (!inventory.IommuOn) throw new IommuNotEnabledException(new ReadinessProbe(_host).Probe(), address.ToString());
        var device = inventory.Read(address) ?? throw new PciDeviceNotFoundException(address);
        if (device.IommuGroup is not int id) throw new PciDeviceNotInIommuGroupException(address);
        var group = inventory.ReadGroup(id, [device]) ?? throw new PciDeviceNotInIommuGroupException(address);  // not read twice
        return (device, group);
    }

    /// <summary>The states the steps were planned from: the runner refuses to run them on anything else.</summary>
    private static IReadOnlyList<MemberState> StatesOf(IommuGroup group) =>
        group.Devices.Select(d => new MemberState(d.Address, d.Driver, d.DriverOverride)).ToArray();

    /// <summary>Each member's driver and override, read straight from the kernel (no names: cheap enough to repeat under the lock).</summary>
    internal static IReadOnlyList<MemberState> ReadMembers(HostContext host, int groupId)
    {
        var binder = new DriverBinder(host);
        return host.Sysfs.List($"kernel/iommu_groups/{groupId.ToString(CultureInfo.InvariantCulture)}/devices")
            .Select(n => PciAddress.TryParse(n, out var a) ? a : (PciAddress?)null)
            .OfType<PciAddress>()
            .Order()
            .Select(a => new MemberState(a, binder.CurrentDriver(a), binder.DriverOverride(a)))
            .ToArray();
    }

    private static string Stays(PciDevice d) => d.Driver is null ? "stays without a driver" : $"stays on {d.Driver}";

    /// <summary>"0000:01:00.0 NVIDIA Corporation AD102 [GeForce RTX 4090] (VGA compatible controller)".</summary>
    internal static string Describe(PciDevice d)
    {
        string names = $"{d.VendorName} {d.DeviceName}".Trim();
        if (names.Length == 0) names = string.Create(CultureInfo.InvariantCulture, $"[{d.VendorId:x4}:{d.DeviceId:x4}]");
        string cls = d.ClassName.Length > 0 ? d.ClassName : string.Create(CultureInfo.InvariantCulture, $"class {d.ClassCode:x6}");
        return $"{d.Address} {names} ({cls})";
    }

    // ---- kernel steps (one write each; the undo restores the state the step found)

    private PlanStep SetOverrideStep(PciAddress a, string driver, string? previous) => new(
        StepKind.SetOverride, a, $"set driver_override of {a} to {driver}",
        n => _binder.SetOverride(a, driver, n),
        n => _binder.RestoreOverride(a, previous, n));

    private PlanStep ClearOverrideStep(PciAddress a, string previous) => new(
        StepKind.ClearOverride, a, $"clear driver_override of {a} (was {previous})",
        n => _binder.ClearOverride(a, n),
        n => _binder.SetOverride(a, previous, n));

    /// <summary>Undo binds back to the very driver, through a matching override (an override that names the driver always
    /// matches, REFERENCE §3.3), then puts the override back to what it was while the device was bound.</summary>
    private PlanStep UnbindStep(PciAddress a, string driver, string? overrideWhileBound) => new(
        StepKind.Unbind, a, $"unbind {a} from {driver}",
        n => _binder.Unbind(a, driver, n),
        n => _binder.RebindTo(a, driver, overrideWhileBound, n));

    /// <summary>Undo unbinds whatever the probe attached (read at undo time: it may be the wrong driver).</summary>
    private PlanStep ProbeStep(PciAddress a) => new(
        StepKind.Probe, a, $"probe drivers for {a}",
        n => _binder.Probe(a, n),
        n =>
        {
            if (_binder.CurrentDriver(a) is string now) _binder.Unbind(a, now, n);
        });

    private PlanStep VerifyStep(PciAddress a, string description, Func<string?, bool> ok, Func<string?, string> why) => new(
        StepKind.Verify, a, description,
        n =>
        {
            string? now = _binder.CurrentDriver(a);
            n($"read {_host.Sysfs.Root.TrimEnd('/')}/{DriverBinder.DevicePath(a)}/driver -> {now ?? "(none)"}");
            if (!ok(now)) throw new StepCheckFailedException($"{a}: {why(now)}");
        },
        _ => { });

    private PlanStep GroupNodeStep(int id) => new(
        StepKind.Verify, null, $"check that /dev/vfio/{id} exists",
        n =>
        {
            string node = $"vfio/{id.ToString(CultureInfo.InvariantCulture)}";
            bool exists = _host.Devfs.Exists(node);
            n($"stat {_host.Devfs.Root.TrimEnd('/')}/{node} -> {(exists ? "present" : "missing")}");
            if (!exists) throw new StepCheckFailedException($"the group's devices are on vfio-pci but /dev/vfio/{id} did not appear");
        },
        _ => { });

    // ---- persistence steps (driverctl-style, REFERENCE §3.3: overrides do not survive a reboot)

    private IEnumerable<PlanStep> PersistSteps(IReadOnlyList<PciDevice> members)
    {
        // driverctl already persists a member for vfio-pci: one owner per device, so no record of ours (Disable removes driverctl's).
        var endpoints = members.Where(d => _persistence.DriverctlDriver(d.Address) != DriverBinder.VfioPci).ToArray();
        if (endpoints.Length == 0) yield break;
        string script = _persistence.ScriptContent;
        if (_persistence.ReadFile(_persistence.ScriptPath) != script)
            yield return WriteFileStep(null, $"install {_persistence.ScriptPath}", _persistence.ScriptPath, script, PassthroughPersistence.ScriptMode);
        // The early stages (boot unit, initramfs hooks) hold the devices before any host driver can bind (REFERENCE §8.1, §8.2).
        foreach (var file in new BootStages(_persistence).Files())
        {
            if (_persistence.ReadFile(file.Path) != file.Content)
                yield return WriteFileStep(null, file.Description, file.Path, file.Content, file.Mode);
        }
        foreach (var d in endpoints)
        {
            string record = _persistence.RecordPath(d.Address);
            if (_persistence.ReadFile(record) != PassthroughPersistence.RecordContent)
                yield return WriteFileStep(d.Address, $"record {d.Address} -> vfio-pci in {record}", record,
                    PassthroughPersistence.RecordContent, PassthroughPersistence.FileMode);
            string rule = _persistence.RulePath(d.Address);
            string ruleText = _persistence.RuleContent(d.Address);
            if (_persistence.ReadFile(rule) != ruleText)
                yield return WriteFileStep(d.Address, $"write udev rule {rule}", rule, ruleText, PassthroughPersistence.FileMode);
            string legacy = _persistence.LegacyRulePath(d.Address);
            if (_persistence.ReadFile(legacy) is not null)
                yield return RemoveFileStep(d.Address, $"remove the old udev rule {legacy} (it ran after the host driver loaded)", legacy);
        }
    }

    private IEnumerable<PlanStep> RemoveSteps(PciAddress a)
    {
        string rule = _persistence.RulePath(a);
        if (_persistence.ReadFile(rule) is not null) yield return RemoveFileStep(a, $"remove udev rule {rule}", rule);
        string legacy = _persistence.LegacyRulePath(a);
        if (_persistence.ReadFile(legacy) is not null) yield return RemoveFileStep(a, $"remove udev rule {legacy}", legacy);
        string record = _persistence.RecordPath(a);
        if (_persistence.ReadFile(record) is not null) yield return RemoveFileStep(a, $"remove record {record}", record);
        // What `driverctl unset-override` removes; without it driverctl would put the device back on vfio-pci at the next boot.
        string driverctl = _persistence.DriverctlRecordPath(a);
        if (_persistence.DriverctlDriver(a) == DriverBinder.VfioPci)
            yield return RemoveFileStep(a, $"remove driverctl's record {driverctl} (as driverctl unset-override {a} does)", driverctl);
    }

    /// <summary>The previous content is read when the step runs (not when planned), so the undo puts back exactly what it replaced.</summary>
    private PlanStep WriteFileStep(PciAddress? a, string description, string path, string content, UnixFileMode mode)
    {
        string? previous = null;
        IReadOnlyList<string>? createdDirectories = null;
        return new PlanStep(StepKind.Persist, a, description,
            n =>
            {
                previous = _persistence.ReadFile(path);
                createdDirectories = _persistence.WriteFile(path, content, mode, n);
            },
            n =>
            {
                if (createdDirectories is null) return;
                if (previous is not null) _persistence.WriteFile(path, previous, mode, n);
                else
                {
                    _persistence.RemoveFile(path, n);
                    _persistence.RemoveEmptyDirectories(createdDirectories, n);
                }
            },
            path);
    }

    private PlanStep RemoveFileStep(PciAddress a, string description, string path)
    {
        string? previous = null;
        return new PlanStep(StepKind.RemovePersisted, a, description,
            n =>
            {
                previous = _persistence.ReadFile(path);
                _persistence.RemoveFile(path, n);
            },
            n =>
            {
                if (previous is not null) _persistence.WriteFile(path, previous, PassthroughPersistence.FileMode, n);
            },
            path);
    }
}

/// <summary>driverctl persists another driver for a group member: Enable would make a second owner that fights it at boot.</summary>
public sealed class PciDeviceDriverctlOverrideException : GalliumException
{
    public PciDeviceDriverctlOverrideException(PciAddress address, string driver, string recordPath)
        : base("PciDeviceDriverctlOverride", ErrorKind.InvalidOperation,
            $"driverctl persists {address} for {driver} ({recordPath}); enabling it for vfio-pci would leave two tools fighting over its driver at every boot.",
            address.ToString())
    {
        Address = address;
        Driver = driver;
        RecommendedAction = $"driverctl unset-override {address}   (then Enable-GalliumPciPassthrough -Address {address})";
    }

    public PciAddress Address { get; }
    public string Driver { get; }
}

/// <summary>A re-read after a step showed the kernel did not do what was asked (a probe that failed silently, the wrong driver).</summary>
public sealed class StepCheckFailedException(string message)
    : GalliumException("PciPassthroughCheckFailed", ErrorKind.DeviceError, message);
