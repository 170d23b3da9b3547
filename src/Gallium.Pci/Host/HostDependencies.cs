namespace Gallium.Pci.Host;

/// <summary>A PCI function the running host depends on, and why (taking it away would break the host).</summary>
public sealed record HostDependency(PciAddress Address, string Reason)
{
    /// <summary>What would free the device, when there is something more specific than "use another device".</summary>
    public string? Remedy { get; init; }
    public override string ToString() => $"{Address}: {Reason}";
}

/// <summary>Finds the PCI functions the host itself depends on: the storage under a mounted file system or active swap,
/// the NIC carrying a default route, the boot VGA device while a framebuffer console is bound to it, a function whose BAR a
/// firmware framebuffer holds (REFERENCE §8.4), and chipset functions (host bridge, ISA/LPC bridge, SMBus, other class
/// 06xx/0c05 platform functions). Passthrough refuses these unless told otherwise, because unbinding them takes the root
/// disk, the network, the console or the platform away.</summary>
public sealed class HostDependencies
{
    private readonly ISysfs _sysfs;
    private readonly IProcfs _procfs;

    public HostDependencies(HostContext host)
    {
        _sysfs = host.Sysfs;
        _procfs = host.Procfs;
    }

    /// <summary>Every dependency found, one per (device, reason).</summary>
    public IReadOnlyList<HostDependency> Find() => Find(null);

    /// <summary>The dependencies among the given functions.</summary>
    public IReadOnlyList<HostDependency> Among(IEnumerable<PciAddress> addresses)
    {
        var set = addresses.ToHashSet();
        return Find(set).Where(d => set.Contains(d.Address)).ToArray();
    }

    /// <summary>Per-function checks (chipset class, framebuffer on a BAR) look only at <paramref name="scope"/> when given.</summary>
    private IReadOnlyList<HostDependency> Find(IReadOnlySet<PciAddress>? scope)
    {
        var found = new List<HostDependency>();
        FindStorage(found);
        FindDefaultRouteNics(found);
        FindBootVgaConsole(found);
        var functions = scope?.Order().ToArray() ?? AllFunctions();
        FindChipset(found, functions);
        FindFirmwareFramebuffers(found, functions);
        return found.Distinct().ToArray();
    }

    private PciAddress[] AllFunctions() =>
        _sysfs.List("bus/pci/devices").Select(n => PciAddress.TryParse(n, out var a) ? a : (PciAddress?)null).OfType<PciAddress>().Order().ToArray();

    // ---- chipset: class 06xx (not a PCI bridge) and 0c05, read from the function's class attribute

    private void FindChipset(List<HostDependency> found, IEnumerable<PciAddress> functions)
    {
        foreach (var a in functions)
        {
            if (SysfsFormat.ParseClass(_sysfs.ReadText($"bus/pci/devices/{a}/class")) is not { } cls || !CaveatReader.IsChipsetClass(cls)) continue;
            string what = (cls >> 8) switch
            {
                0x0600 => "a host bridge",
                0x0601 => "the ISA/LPC bridge (firmware, TPM, embedded controller, legacy I/O)",
                0x0c05 => "the SMBus controller (sensors, memory SPD, power management)",
                _ => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"a chipset function (class {cls >> 8:x4})"),
            };
            found.Add(new HostDependency(a, $"it is {what}, part of the chipset the host runs on"));
        }
    }

    // ---- firmware framebuffer: an efifb/vesafb/simple-framebuffer/BOOTFB line of /proc/iomem inside one of its BARs

    private void FindFirmwareFramebuffers(List<HostDependency> found, IEnumerable<PciAddress> functions)
    {
        var iomem = IoMem.Read(_procfs);
        if (!iomem.FirmwareFramebuffers.Any()) return;
        foreach (var a in functions)
        {
            var bars = SysfsFormat.ParseResource(_sysfs.ReadText($"bus/pci/devices/{a}/resource"));
            foreach (var (bar, fb) in iomem.FramebuffersIn(bars))
            {
                var parameters = IoMem.ParametersThatFree(fb.Name);
                found.Add(new HostDependency(a, string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"the firmware framebuffer {fb.Name} (the host's boot console) holds its BAR {bar.Index} [mem 0x{fb.Start:x}-0x{fb.End:x}]"))
                {
                    Remedy = $"Boot with {string.Join(" or ", parameters)} on the kernel command line ({ReadinessProbe.GrubHowTo}) to free it.",
                });
            }
        }
    }

    // ---- storage: /proc/self/mountinfo -> MAJ:MIN -> /sys/dev/block/MAJ:MIN -> PCI ancestor; dm/md through slaves/

    private void FindStorage(List<HostDependency> found)
    {
        foreach (var (devNumber, source, mountPoint) in Mounts())
        {
            string? block = null;
            if (!devNumber.StartsWith("0:", StringComparison.Ordinal)) block = $"dev/block/{devNumber}";
            // btrfs and some others report an anonymous 0:N device; the mount source still names the block device
            else if (source.StartsWith("/dev/", StringComparison.Ordinal)) block = BlockByDevName(source);
            if (block is null) continue;
            foreach (var pci in PciFunctionsUnderBlock(block))
                found.Add(new HostDependency(pci, $"it holds the file system mounted on {mountPoint} ({source})"));
        }
        foreach (string swap in SwapDevices())
        {
            string? block = BlockByDevName(swap);
            if (block is null) continue;
            foreach (var pci in PciFunctionsUnderBlock(block))
                found.Add(new HostDependency(pci, $"it holds the active swap device {swap}"));
        }
    }

    /// <summary>(major:minor, source, mount point) for each line of mountinfo (proc(5): field 3, first field after " - " + 1, field 5).</summary>
    private IEnumerable<(string DevNumber, string Source, string MountPoint)> Mounts()
    {
        string? text = _procfs.ReadText("self/mountinfo");
        if (text is null) yield break;
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] f = line.Split(' ');
            int dash = Array.IndexOf(f, "-");
            if (f.Length < 5 || dash < 0 || dash + 2 >= f.Length) continue;
            yield return (f[2], Unescape(f[dash + 2]), Unescape(f[4]));
        }
    }

    private IEnumerable<string> SwapDevices()
    {
        string? text = _procfs.ReadText("swaps");
        if (text is null) yield break;
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1))
        {
            string[] f = line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 2 && f[1] == "partition") yield return Unescape(f[0]);
        }
    }

    /// <summary>mountinfo escapes space, tab, newline and backslash as \ooo octal.</summary>
    private static string Unescape(string s)
    {
        if (!s.Contains('\\')) return s;
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == '\\' && IsOctal(s, i + 1))
            {
                sb.Append((char)Convert.ToInt32(s.Substring(i + 1, 3), 8));
                i += 3;
            }
            else sb.Append(s[i]);
        }
        return sb.ToString();
    }

    private static bool IsOctal(string s, int at) =>
        at + 3 <= s.Length && s.Substring(at, 3).All(c => c is >= '0' and <= '7');

    /// <summary>The sysfs block directory for a /dev path: /dev/sda1 -> class/block/sda1; /dev/mapper/x -> the dm-N whose dm/name is x.</summary>
    private string? BlockByDevName(string devPath)
    {
        const string mapper = "/dev/mapper/";
        if (devPath.StartsWith(mapper, StringComparison.Ordinal))
        {
            string name = devPath[mapper.Length..];
            foreach (string b in _sysfs.List("class/block"))
                if (b.StartsWith("dm-", StringComparison.Ordinal) && _sysfs.ReadText($"class/block/{b}/dm/name")?.TrimEnd('\n') == name)
                    return $"class/block/{b}";
            return null;
        }
        string leaf = devPath["/dev/".Length..];
        if (leaf.Length == 0 || leaf.Contains('/') || leaf.Contains("..")) return null;
        return _sysfs.Exists($"class/block/{leaf}") ? $"class/block/{leaf}" : null;
    }

    /// <summary>The PCI functions a block device sits on: its own PCI ancestor, or, for dm/md (and their stacks), those of every slave.</summary>
    private IEnumerable<PciAddress> PciFunctionsUnderBlock(string block)
    {
        var result = new HashSet<PciAddress>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>();
        pending.Push(block);
        while (pending.Count > 0 && seen.Count < 256)
        {
            string? real = _sysfs.Resolve(pending.Pop());
            if (real is null || !seen.Add(real)) continue;
            if (NearestPciFunction(real) is PciAddress pci) result.Add(pci);
            foreach (string slave in _sysfs.List($"{real}/slaves")) pending.Push($"class/block/{slave}");
        }
        return result;
    }

    // ---- network: default routes -> class/net/<if>/device; bonds, bridges and VLANs through lower_* and brif/

    private void FindDefaultRouteNics(List<HostDependency> found)
    {
        foreach (string iface in DefaultRouteInterfaces())
            foreach (var (pci, via) in PciFunctionsUnderNetdev(iface))
                found.Add(new HostDependency(pci, via == iface
                    ? $"it is the network interface {iface} that carries the default route"
                    : $"it is {via}, under {iface} that carries the default route"));
    }

    /// <summary>Interfaces with a default route: /proc/net/route (Destination and Mask 00000000) and /proc/net/ipv6_route (::/0).</summary>
    private IEnumerable<string> DefaultRouteInterfaces()
    {
        var result = new SortedSet<string>(StringComparer.Ordinal);
        string? v4 = _procfs.ReadText("net/route");
        if (v4 is not null)
            foreach (string line in v4.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1))
            {
                string[] f = line.Split(['\t', ' '], StringSplitOptions.RemoveEmptyEntries);
                if (f.Length >= 8 && f[1] == "00000000" && f[7] == "00000000") result.Add(f[0]);
            }
        string? v6 = _procfs.ReadText("net/ipv6_route");
        if (v6 is not null)
            foreach (string line in v6.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            {
                string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length >= 10 && f[0] == new string('0', 32) && f[1] == "00" && f[9] != "lo") result.Add(f[9]);
            }
        result.Remove("lo");
        return result;
    }

    /// <summary>(PCI function, the physical interface it backs) for a netdev, following upper->lower links recursively.</summary>
    private IEnumerable<(PciAddress, string)> PciFunctionsUnderNetdev(string iface)
    {
        var result = new List<(PciAddress, string)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>();
        pending.Push(iface);
        while (pending.Count > 0 && seen.Count < 256)
        {
            string name = pending.Pop();
            if (!IsPlainName(name) || !seen.Add(name)) continue;
            string dir = $"class/net/{name}";
            if (_sysfs.Resolve($"{dir}/device") is string device && NearestPciFunction(device) is PciAddress pci)
                result.Add((pci, name));
            foreach (string entry in _sysfs.List(dir))
                if (entry.StartsWith("lower_", StringComparison.Ordinal)) pending.Push(entry["lower_".Length..]);
            foreach (string port in _sysfs.List($"{dir}/brif")) pending.Push(port);
        }
        return result;
    }

    // ---- console: boot VGA with a framebuffer console bound

    private void FindBootVgaConsole(List<HostDependency> found)
    {
        string? console = null;
        foreach (string vt in _sysfs.List("class/vtconsole").Where(n => n.StartsWith("vtcon", StringComparison.Ordinal)))
        {
            string? name = _sysfs.ReadText($"class/vtconsole/{vt}/name");
            if (name is not null && name.Contains("frame buffer", StringComparison.OrdinalIgnoreCase)
                && _sysfs.ReadText($"class/vtconsole/{vt}/bind")?.Trim() == "1")
            {
                console = $"{vt} ({name.Trim()})";
                break;
            }
        }
        if (console is null) return;
        foreach (string entry in _sysfs.List("bus/pci/devices"))
        {
            if (!PciAddress.TryParse(entry, out var address)) continue;
            if (_sysfs.ReadText($"bus/pci/devices/{entry}/boot_vga")?.Trim() == "1")
                found.Add(new HostDependency(address, $"it is the boot VGA device and the framebuffer console {console} is bound to it"));
        }
    }

    // ---- helpers

    /// <summary>The last PCI function named in a canonical sysfs path (devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/...).</summary>
    internal static PciAddress? NearestPciFunction(string canonicalPath)
    {
        PciAddress? nearest = null;
        foreach (string part in canonicalPath.Split('/'))
            if (part.Count(c => c == ':') == 2 && PciAddress.TryParse(part, out var a) && a.ToString() == part) nearest = a;
        return nearest;
    }

    private static bool IsPlainName(string name) =>
        name.Length > 0 && name != "." && name != ".." && !name.Contains('/');
}
