using System.Globalization;
using System.Text;
using Gallium.Pci.Testing.Internal;

namespace Gallium.Pci.Testing;

// What the kernel does with each write(2): REFERENCE §3.2 (sriov_numvfs, reset), §3.3 (driver_override), §3.6 (bind,
// unbind, new_id, remove_id, drivers_probe), §4.5 (DMA ownership), §4.6 (failure modes).
public sealed partial class SimulatedKernel
{
    private const int EISDIR = 21;
    private static readonly TimeSpan HoldDelay = TimeSpan.FromMilliseconds(50);

    /// <summary>One write(2), interpreted. Throws <see cref="KernelWriteException"/> with the errno the kernel would return.
    /// A zero-length value is a no-op (REFERENCE §3.3). A write that would block (a held device) fails with ETIMEDOUT after
    /// min(<paramref name="timeout"/>, 50 ms), leaving the device as it was.</summary>
    public void Write(string path, string value, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(value);
        if (path.Length > 0 && path[0] == '/') throw new ArgumentException($"sysfs paths are relative: '{path}'", nameof(path));
        string full = path.Length == 0 ? SysfsRoot : SysfsRoot + "/" + path;
        int errno;
        bool blocked = false, outside;
        lock (_gate)
        {
            Interlocked.Increment(ref _writeCount);
            errno = ResolveForWrite(full, out string? resolved, out outside);
            if (errno == 0) errno = InjectedFault(path, resolved!) ?? (value.Length == 0 ? 0 : Interpret(resolved!, value, out blocked));
            _writes.Add(new KernelWrite(path, resolved ?? path, value, errno));
        }
        if (errno == 0)
        {
            AfterWrite();
            return;
        }
        string shown = value.TrimEnd('\n');
        if (blocked)
        {
            Thread.Sleep(timeout < TimeSpan.Zero || timeout > HoldDelay ? HoldDelay : timeout);
            throw new KernelWriteException(path, value, Errnos.ETIMEDOUT,
                $"Writing '{shown}' to {full} did not return within {timeout.TotalSeconds:0.#} s (the kernel is waiting, e.g. for a VM to release a vfio device).");
        }
        if (outside)
            throw new KernelWriteException(full, "", Errnos.EPERM, $"Refusing to write {full}: it resolves outside {SysfsRoot}.");
        throw new KernelWriteException(path, value, errno, $"Writing '{shown}' to {full} failed: {Errnos.Name(errno)} ({StrError(errno)} : '{full}').");
    }

    /// <summary>The write's target with links resolved, relative to the sysfs root; refuses anything outside the tree.</summary>
    private int ResolveForWrite(string full, out string? resolved, out bool outside)
    {
        resolved = null;
        outside = false;
        string? dir = Tree.RealPath(Path.GetDirectoryName(full) ?? full);
        if (dir is null) return Errnos.ENOENT;
        if (!Inside(dir)) { outside = true; return Errnos.EPERM; }
        string? target = Tree.RealPath(dir + "/" + Path.GetFileName(full));
        if (target is null) return Errnos.ENOENT;  // sysfs has no O_CREAT: a missing attribute is ENOENT
        if (!Inside(target)) { outside = true; return Errnos.EPERM; }
        resolved = target == _sysReal ? "" : target[(_sysReal.Length + 1)..];
        return Directory.Exists(target) ? EISDIR : 0;
    }

    private bool Inside(string real) => real == _sysReal || real.StartsWith(_sysReal + "/", StringComparison.Ordinal);

    private int? InjectedFault(string path, string resolved)
    {
        int? errno = null;
        foreach (var c in _countdowns.ToArray())
        {
            if (--c.Remaining > 0) continue;
            _countdowns.Remove(c);
            errno ??= c.Errno;
        }
        foreach (var s in _suffixFaults.ToArray())
        {
            if (!path.EndsWith(s.Suffix, StringComparison.Ordinal) && !resolved.EndsWith(s.Suffix, StringComparison.Ordinal)) continue;
            if (--s.Remaining > 0) continue;
            _suffixFaults.Remove(s);
            errno ??= s.Errno;
        }
        return errno;
    }

    private int Interpret(string resolved, string value, out bool blocked)
    {
        blocked = false;
        if (resolved == "bus/pci/drivers_probe") return DriversProbe(value);
        if (resolved == "bus/pci/drivers_autoprobe") return StoreBool(resolved, value);
        string[] parts = resolved.Split('/');
        if (parts.Length == 5 && parts[0] == "bus" && parts[1] == "pci" && parts[2] == "drivers")
        {
            var driver = LoadedDriver(parts[3]);
            if (driver is null) return Errnos.EACCES;
            return parts[4] switch
            {
                "bind" => Bind(driver, value),
                "unbind" => Unbind(driver, value, out blocked),
                "new_id" => NewId(driver, value),
                "remove_id" => RemoveId(driver, value),
                "uevent" => 0,
                _ => Errnos.EACCES,
            };
        }
        int slash = resolved.LastIndexOf('/');
        string dir = slash < 0 ? "" : resolved[..slash], attr = resolved[(slash + 1)..];
        if (_byDir.TryGetValue(dir, out var dev))
        {
            return attr switch
            {
                "driver_override" => SetOverride(dev, value),
                "sriov_numvfs" when dev.Sriov is not null => SetNumVfs(dev, value),
                "reset" => ParseUnsigned(value) == 1 ? 0 : Errnos.EINVAL,  // REFERENCE §3.2: exactly 1
                "reset_method" => SetResetMethod(dev, value),
                "numa_node" => int.TryParse(Strip(value), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int node)
                    ? Store(resolved, $"{node}\n") : Errnos.EINVAL,
                "d3cold_allowed" or "sriov_drivers_autoprobe" => StoreBool(resolved, value),
                "enable" => SetEnable(resolved, value),
                _ => Errnos.EACCES,
            };
        }
        if (parts.Length == 4 && parts[0] == "kernel" && parts[1] == "iommu_groups" && parts[3] == "type") return SetGroupType(parts[2], value);
        if (parts.Length == 5 && parts[1] == "virtual" && parts[2] == "vtconsole" && parts[4] == "bind") return StoreBool(resolved, value);
        return Errnos.EACCES;  // kernfs: a read-only attribute refuses open for write
    }

    // ---- driver_override (REFERENCE §3.3) --------------------------------------------------------------------------

    private int SetOverride(SimDevice dev, string value)
    {
        if (Encoding.UTF8.GetByteCount(value) >= 4095) return Errnos.EINVAL;  // len >= PAGE_SIZE - 1
        string s = value;
        int nul = s.IndexOf('\0');
        if (nul >= 0) s = s[..nul];                                           // strlen(): embedded NULs truncate
        int newline = s.IndexOf('\n');
        if (newline >= 0) s = s[..newline];                                   // cut at the first \n; "\n" alone clears
        // Setting or clearing never unbinds and never loads a module.
        _tree.Text($"sys/{dev.RelDir}/driver_override", (s.Length == 0 ? "(null)" : s) + "\n");
        return 0;
    }

    // ---- bind / unbind / drivers_probe (REFERENCE §3.6) -------------------------------------------------------------

    private int Unbind(SimDriver driver, string value, out bool blocked)
    {
        blocked = false;
        if (!_byBdf.TryGetValue(Strip(value), out var dev) || DriverOf(dev) != driver.Name) return Errnos.ENODEV;
        // vfio-pci's remove() waits until userspace closes the device (REFERENCE §4.6).
        bool inUse = _held.Contains(dev.Bdf) || (IsVfio(driver.Name) && GroupOf(dev) is int g && _claimedGroups.Contains(g));
        if (inUse) { blocked = true; return Errnos.ETIMEDOUT; }
        Detach(dev);
        return 0;
    }

    private int Bind(SimDriver driver, string value)
    {
        if (!_byBdf.TryGetValue(Strip(value), out var dev) || !Matches(driver, dev)) return Errnos.ENODEV;
        if (DriverOf(dev) is not null) return Errnos.EBUSY;
        var target = TakeWrongDriver(dev) ?? driver;
        if (DmaConflict(target, dev)) return Errnos.EBUSY;
        int probe = ProbeError(target, dev);
        if (probe != 0) return probe;  // bind reports the probe error (device_driver_attach); drivers_probe swallows it
        Attach(target, dev);
        return 0;
    }

    private int DriversProbe(string value)
    {
        if (!_byBdf.TryGetValue(Strip(value), out var dev)) return Errnos.ENODEV;
        if (DriverOf(dev) is not null) return 0;  // bound: device_attach is a no-op, even if the override names another driver
        return DeviceAttach(dev);
    }

    /// <summary>device_attach(): the override's driver if set (and loaded), else the first loaded driver whose table matches.
    /// A failing probe() is silent and the next driver is tried; a DMA-ownership conflict is a non-probe error (EINVAL).</summary>
    private int DeviceAttach(SimDevice dev)
    {
        if (TakeWrongDriver(dev) is { } wrong) { Attach(wrong, dev); return 0; }
        string? over = OverrideOf(dev);
        foreach (var driver in _drivers.Where(d => d.Loaded).ToList())
        {
            if (!Matches(driver, dev, over)) continue;
            if (DmaConflict(driver, dev)) return Errnos.EINVAL;
            if (ProbeError(driver, dev) != 0) continue;
            Attach(driver, dev);
            return 0;
        }
        return 0;
    }

    /// <summary>driver_attach(): a newly registered driver or new dynamic id binds every unbound device it matches.</summary>
    private void DriverAttach(SimDriver driver)
    {
        foreach (var dev in _devices.OrderBy(d => d.Address).ToList())
        {
            if (DriverOf(dev) is not null || !Matches(driver, dev)) continue;
            var target = TakeWrongDriver(dev) ?? driver;
            if (DmaConflict(target, dev) || ProbeError(target, dev) != 0) continue;
            Attach(target, dev);
        }
    }

    /// <summary>pci_match_device(): an override admits only the driver it names (which then always matches); else dynamic
    /// ids, then the static table, where vfio-pci's only entry is override-only (REFERENCE §3.3).</summary>
    private bool Matches(SimDriver driver, SimDevice dev) => Matches(driver, dev, OverrideOf(dev));

    private static bool Matches(SimDriver driver, SimDevice dev, string? over)
    {
        if (over is not null) return over == driver.Name;
        if (driver.DynIds.Any(id => id.Matches(dev))) return true;
        return !driver.OverrideOnly && driver.Ids.Any(id => id.Matches(dev));
    }

    private bool DmaConflict(SimDriver driver, SimDevice dev) =>
        !driver.ManagedDma && _claimedGroups.Count > 0 && GroupOf(dev) is int g && _claimedGroups.Contains(g);

    /// <summary>What the driver's probe() returns for this device (0 = binds).</summary>
    private int ProbeError(SimDriver driver, SimDevice dev)
    {
        if (IsVfio(driver.Name))
        {
            if (dev.HeaderType != 0) return Errnos.EINVAL;          // REFERENCE §4.5: vfio-pci refuses non-type-0 headers
            if (NumVfs(dev) > 0) return Errnos.EBUSY;              // REFERENCE §4.4: PF with SR-IOV enabled
            if (GroupOf(dev) is null) return Errnos.EINVAL;        // no IOMMU group, no vfio group
        }
        // pcieport binds only PCIe ports; a PCIe-to-PCI bridge stays driverless.
        if (driver.Name == "pcieport" && dev.Kind is not (DeviceKind.RootPort or DeviceKind.SwitchUpstream or DeviceKind.SwitchDownstream))
            return Errnos.ENODEV;
        return 0;
    }

    private SimDriver? TakeWrongDriver(SimDevice dev)
    {
        if (!_wrongDriver.Remove(dev.Bdf, out var name)) return null;
        var driver = _drivers.FirstOrDefault(d => d.Name == name);
        if (driver is null)
        {
            driver = new SimDriver { Name = name, Module = KernelConfig.Normalize(name) };
            _drivers.Add(driver);
        }
        if (!driver.Loaded)
        {
            if (driver.Module is null) CreateDriverDir(driver);
            else LoadModuleFiles(driver.Module, null);
            WriteProcModules();
        }
        return driver;
    }

    private static bool IsVfio(string driver) =>
        driver == "vfio-pci" || driver.EndsWith("_vfio_pci", StringComparison.Ordinal) || driver.EndsWith("-vfio-pci", StringComparison.Ordinal);

    private void Attach(SimDriver driver, SimDevice dev)
    {
        _tree.Link($"sys/{dev.RelDir}/driver", $"sys/bus/pci/drivers/{driver.Name}");
        _tree.Link($"sys/bus/pci/drivers/{driver.Name}/{dev.Bdf}", $"sys/{dev.RelDir}");
        WriteUevent(dev, driver.Name);
        // /dev/vfio/<group> exists while any member of the group is on vfio-pci (REFERENCE §3.2 iommu_group, §1).
        if (IsVfio(driver.Name) && GroupOf(dev) is int g) _tree.Text($"dev/vfio/{g}", "");
        if (driver.Name == dev.HostDriver) CreateChildren(dev);
    }

    private void Detach(SimDevice dev)
    {
        string? name = DriverOf(dev);
        if (name is null) return;
        var driver = _drivers.FirstOrDefault(d => d.Name == name);
        // A PF driver's remove() disables SR-IOV, unless a VF is assigned to a VM (i40e: "VFs are assigned - not disabling SR-IOV").
        if (driver is { SriovConfigure: true } && NumVfs(dev) > 0 && !_devices.Any(v => v.PhysFn == dev && _held.Contains(v.Bdf))) DisableVfs(dev);
        if (name == dev.HostDriver) RemoveChildren(dev);
        _tree.Remove($"sys/{dev.RelDir}/driver");
        _tree.Remove($"sys/bus/pci/drivers/{name}/{dev.Bdf}");
        WriteUevent(dev, null);
        if (IsVfio(name) && GroupOf(dev) is int g)
        {
            bool another = Members(g).Any(m => m != dev.Bdf && _byBdf.TryGetValue(m, out var o) && DriverOf(o) is { } od && IsVfio(od));
            if (!another) _tree.Remove($"dev/vfio/{g}");
        }
    }

    // ---- new_id / remove_id (REFERENCE §3.6, §4.3) ------------------------------------------------------------------

    private int NewId(SimDriver driver, string value)
    {
        var f = ScanHex(value, 7);
        if (f.Count < 2) return Errnos.EINVAL;
        var id = new IdMatch(f[0], f[1], f.Count > 2 ? f[2] : IdMatch.Any, f.Count > 3 ? f[3] : IdMatch.Any,
            f.Count > 4 ? f[4] : 0, f.Count > 5 ? f[5] : 0);
        if (f.Count != 7)
        {
            // The kernel matches a fake device (no override) with these ids against the driver (pci-driver.c new_id_store).
            var probe = new SimDevice
            {
                Address = default, Kind = DeviceKind.Endpoint, Vendor = (ushort)id.Vendor, Device = (ushort)id.Device,
                SubVendor = (ushort)id.SubVendor, SubDevice = (ushort)id.SubDevice, ClassCode = id.Class,
            };
            if (driver.DynIds.Any(x => x.Matches(probe)) || (!driver.OverrideOnly && driver.Ids.Any(x => x.Matches(probe)))) return Errnos.EEXIST;
        }
        driver.DynIds.Add(id);
        DriverAttach(driver);  // binds every unbound matching device, side effect included (REFERENCE §4.3 TEST G)
        return 0;
    }

    private int RemoveId(SimDriver driver, string value)
    {
        var f = ScanHex(value, 6);
        if (f.Count < 2) return Errnos.EINVAL;
        uint subVendor = f.Count > 2 ? f[2] : IdMatch.Any, subDevice = f.Count > 3 ? f[3] : IdMatch.Any;
        uint cls = f.Count > 4 ? f[4] : 0, mask = f.Count > 5 ? f[5] : 0;
        int index = driver.DynIds.FindIndex(id => id.Vendor == f[0] && id.Device == f[1] &&
            (subVendor == IdMatch.Any || id.SubVendor == subVendor) && (subDevice == IdMatch.Any || id.SubDevice == subDevice) &&
            ((id.Class ^ cls) & mask) == 0);
        if (index < 0) return Errnos.ENODEV;
        driver.DynIds.RemoveAt(index);  // does not unbind anything
        return 0;
    }

    /// <summary>sscanf("%x %x ...") semantics: hex fields (optional 0x), parsing stops at the first field that is not hex.</summary>
    private static List<uint> ScanHex(string value, int max)
    {
        var result = new List<uint>();
        foreach (var token in value.Split([' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries))
        {
            if (result.Count == max) break;
            string t = token.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? token[2..] : token;
            if (!uint.TryParse(t, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint v)) break;
            result.Add(v);
        }
        return result;
    }

    // ---- SR-IOV (REFERENCE §3.2 sriov_numvfs) -------------------------------------------------------------------------

    private int SetNumVfs(SimDevice pf, string value)
    {
        long n = ParseUnsigned(value);
        if (n < 0 || n > ushort.MaxValue) return Errnos.EINVAL;  // kstrtou16
        if (n > pf.Sriov!.TotalVfs) return Errnos.ERANGE;
        int current = NumVfs(pf);
        if (n == current) return 0;
        string? driverName = DriverOf(pf);
        if (driverName is null || _drivers.FirstOrDefault(d => d.Name == driverName) is not { SriovConfigure: true }) return Errnos.ENOENT;
        if (n == 0) { DisableVfs(pf); return 0; }
        if (current != 0) return Errnos.EBUSY;  // must write 0 first
        EnableVfs(pf, (int)n);
        return 0;
    }

    private void EnableVfs(SimDevice pf, int count)
    {
        string parentDir = pf.RelDir[..pf.RelDir.LastIndexOf('/')];
        var created = new List<SimDevice>();
        for (int i = 0; i < count; i++)
        {
            var address = HostTopology.VfAddress(pf, i)!.Value;
            var vf = new SimDevice
            {
                Address = address, Kind = DeviceKind.Endpoint, Vendor = pf.Vendor, Device = pf.Sriov!.VfDeviceId,
                SubVendor = pf.SubVendor, SubDevice = pf.SubDevice, ClassCode = pf.ClassCode, Revision = pf.Revision,
                PhysFn = pf, VfIndex = i, Parent = pf.Parent, NumaNode = pf.NumaNode, ResetMethods = "flr",
                HostDriver = pf.Sriov.VfDriver, RelDir = $"{parentDir}/{address}",
            };
            foreach (var (index, size) in VfBars)
            {
                if (pf.VfBarStarts.TryGetValue(index, out ulong start))
                    vf.Bars.Add(new SimBar { Index = index, Size = size, Type = BarType.Mem64, Prefetchable = true, Start = start + size * (ulong)i });
            }
            _devices.Add(vf);
            _byBdf[vf.Bdf] = vf;
            _byDir[vf.RelDir] = vf;
            CreateDeviceNode(vf, null);
            _tree.Link($"sys/{pf.RelDir}/virtfn{i}", $"sys/{vf.RelDir}");
            if (_config.IommuOn)
            {
                int g = Grouping.Assign(vf, GroupOf, [], [], LowestFreeGroup);
                AddToGroup(vf, g);
            }
            created.Add(vf);
        }
        _tree.Text($"sys/{pf.RelDir}/sriov_numvfs", $"{count}\n");
        if (_tree.Read($"sys/{pf.RelDir}/sriov_drivers_autoprobe")?.Trim() != "0")
        {
            foreach (var vf in created) DeviceAttach(vf);
        }
    }

    private void DisableVfs(SimDevice pf)
    {
        var vfs = _devices.Where(d => d.PhysFn == pf).OrderByDescending(d => d.VfIndex).ToList();
        foreach (var vf in vfs)
        {
            Detach(vf);
            RemoveFromGroup(vf);
            _tree.Remove($"sys/bus/pci/devices/{vf.Bdf}");
            _tree.Remove($"sys/{pf.RelDir}/virtfn{vf.VfIndex}");
            _tree.Remove($"sys/{vf.RelDir}");
            _devices.Remove(vf);
            _byBdf.Remove(vf.Bdf);
            _byDir.Remove(vf.RelDir);
            _held.Remove(vf.Bdf);
        }
        _tree.Text($"sys/{pf.RelDir}/sriov_numvfs", "0\n");
    }

    private int LowestFreeGroup()
    {
        var used = GroupIds().ToHashSet();
        int g = 0;
        while (used.Contains(g)) g++;
        return g;
    }

    // ---- small attributes -------------------------------------------------------------------------------------------

    private int SetResetMethod(SimDevice dev, string value)
    {
        string v = Strip(value).Trim();
        var supported = (dev.ResetMethods ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (v == "default") return Store($"{dev.RelDir}/reset_method", string.Join(' ', supported) + "\n");
        var names = v.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (names.Any(n => !supported.Contains(n))) return Errnos.EINVAL;  // REFERENCE §3.2: unsupported name
        return Store($"{dev.RelDir}/reset_method", string.Join(' ', names) + "\n");
    }

    private int SetEnable(string resolved, string value)
    {
        long v = ParseUnsigned(value);
        if (v < 0) return Errnos.EINVAL;
        if (v == 0 && _tree.Read($"sys/{resolved}")?.Trim() == "0") return Errnos.EIO;  // REFERENCE §3.2: disabling twice
        return Store(resolved, v == 0 ? "0\n" : "1\n");
    }

    private int SetGroupType(string group, string value)
    {
        string v = Strip(value);
        if (v is not ("DMA" or "DMA-FQ" or "identity" or "auto")) return Errnos.EINVAL;
        if (!int.TryParse(group, out int g)) return Errnos.EINVAL;
        var members = Members(g);
        if (members.Count != 1) return Errnos.EINVAL;
        if (_byBdf.TryGetValue(members[0], out var dev) && DriverOf(dev) is not null) return Errnos.EBUSY;
        return Store($"kernel/iommu_groups/{group}/type", (v == "auto" ? _config.DefaultDomainType : v) + "\n");
    }

    private int StoreBool(string resolved, string value)
    {
        string v = Strip(value);
        return v is "0" or "1" ? Store(resolved, v + "\n") : Errnos.EINVAL;
    }

    private int Store(string resolved, string text)
    {
        _tree.Text($"sys/{resolved}", text);
        return 0;
    }

    /// <summary>sysfs_streq: one trailing newline is ignored.</summary>
    private static string Strip(string value) => value.EndsWith('\n') ? value[..^1] : value;

    /// <summary>kstrtoul(buf, 0): decimal, 0x hex or 0 octal, optional trailing newline; -1 when not a number.</summary>
    private static long ParseUnsigned(string value)
    {
        string v = Strip(value);
        try
        {
            if (v.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) return Convert.ToInt64(v[2..], 16);
            if (v.Length > 1 && v[0] == '0') return Convert.ToInt64(v[1..], 8);
            return long.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out long d) ? d : -1;
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException) { return -1; }
    }

    private static string StrError(int errno) => errno switch
    {
        Errnos.EPERM => "Operation not permitted",
        Errnos.ENOENT => "No such file or directory",
        Errnos.EIO => "Input/output error",
        Errnos.EACCES => "Permission denied",
        Errnos.EBUSY => "Device or resource busy",
        Errnos.EEXIST => "File exists",
        Errnos.ENODEV => "No such device",
        EISDIR => "Is a directory",
        Errnos.EINVAL => "Invalid argument",
        Errnos.ERANGE => "Numerical result out of range",
        Errnos.ETIMEDOUT => "Connection timed out",
        _ => $"errno {errno}",
    };
}
