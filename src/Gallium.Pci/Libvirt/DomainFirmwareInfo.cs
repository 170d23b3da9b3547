using System.Globalization;
using System.Xml.Linq;

namespace Gallium.Pci.Libvirt;

/// <summary>Which firmware boots the guest: it decides who sizes the 64-bit MMIO window (REFERENCE §6.1).</summary>
public enum GuestFirmware
{
    /// <summary>SeaBIOS (libvirt's default for x86 when neither <c>firmware='efi'</c> nor an OVMF loader is given).</summary>
    Bios,
    /// <summary>OVMF (edk2) UEFI.</summary>
    Uefi,
}

/// <summary>One <c>-fw_cfg</c> argument passed through <c>&lt;qemu:commandline&gt;</c> (REFERENCE §6.3), e.g.
/// <c>name=opt/ovmf/X-PciMmio64Mb,string=262144</c>.</summary>
/// <param name="Name">The fw_cfg item name (<c>opt/ovmf/X-PciMmio64Mb</c>).</param>
/// <param name="StringValue">The <c>string=</c> value, if given.</param>
/// <param name="File">The <c>file=</c> path, if given.</param>
/// <param name="Argument">The whole argument as written.</param>
public sealed record FwCfgArgument(string Name, string? StringValue, string? File, string Argument);

/// <summary>The facts of a domain XML the large-BAR (MMIO window) fix depends on (REFERENCE §6.3). Read-only.</summary>
public sealed record DomainFirmwareInfo
{
    public GuestFirmware Firmware { get; init; }
    /// <summary>The <c>&lt;loader&gt;</c> path, if any.</summary>
    public string? LoaderPath { get; init; }
    /// <summary>The machine type, e.g. <c>pc-q35-7.2</c>.</summary>
    public string? MachineType { get; init; }
    public bool IsQ35 => MachineType is { } m && m.Contains("q35", StringComparison.OrdinalIgnoreCase);
    /// <summary><c>&lt;cpu mode&gt;</c>: host-passthrough, host-model, custom, maximum; null when there is no <c>&lt;cpu&gt;</c>.</summary>
    public string? CpuMode { get; init; }
    /// <summary><c>&lt;cpu&gt;&lt;vendor&gt;</c> as written (custom mode), e.g. <c>Intel</c>; null when absent.</summary>
    public string? CpuVendor { get; init; }
    /// <summary><c>&lt;cpu&gt;&lt;model&gt;</c>, e.g. <c>qemu64</c>, <c>Skylake-Server</c>.</summary>
    public string? CpuModel { get; init; }
    /// <summary><c>&lt;maxphysaddr mode&gt;</c>: passthrough or emulate; null when absent.</summary>
    public string? MaxPhysAddrMode { get; init; }
    public int? MaxPhysAddrBits { get; init; }
    /// <summary><c>limit=</c> (libvirt ≥ 9.3; 9.0 drops it, REFERENCE §6.3).</summary>
    public int? MaxPhysAddrLimit { get; init; }
    /// <summary>The <c>-fw_cfg</c> arguments of <c>&lt;qemu:commandline&gt;</c>.</summary>
    public IReadOnlyList<FwCfgArgument> FwCfg { get; init; } = [];
    /// <summary>The <c>-global</c> arguments of <c>&lt;qemu:commandline&gt;</c> (e.g. <c>host-x86_64-cpu.host-phys-bits-limit=39</c>).</summary>
    public IReadOnlyList<string> QemuGlobals { get; init; } = [];
    /// <summary>The pcie-root's <c>&lt;pcihole64&gt;</c> in bytes; null when not set.</summary>
    public ulong? PciHole64Bytes { get; init; }
    /// <summary><c>&lt;memory&gt;</c> in bytes.</summary>
    public ulong? MemoryBytes { get; init; }
    /// <summary><c>&lt;maxMemory&gt;</c> in bytes (the memory hot-plug area OVMF places the window above).</summary>
    public ulong? MaxMemoryBytes { get; init; }

    /// <summary>The <c>opt/ovmf/X-PciMmio64Mb</c> value in MiB, if the domain sets it (REFERENCE §6.1).</summary>
    public ulong? PciMmio64Mb =>
        FwCfg.LastOrDefault(f => f.Name == PciMmio64MbName) is { StringValue: { } v }
        && ulong.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out ulong mb) ? mb : null;

    public const string PciMmio64MbName = "opt/ovmf/X-PciMmio64Mb";
    /// <summary>The namespace of <c>&lt;qemu:commandline&gt;</c>.</summary>
    public static readonly XNamespace QemuNamespace = "http://libvirt.org/schemas/domain/qemu/1.0";

    /// <summary>Reads the firmware facts of a domain XML.</summary>
    public static DomainFirmwareInfo Read(string domainXml)
    {
        var root = DomainXml.Parse(domainXml).Root;
        var os = root?.Element("os");
        var cpu = root?.Element("cpu");
        var maxPhys = cpu?.Element("maxphysaddr");
        string? loader = os?.Element("loader")?.Value.Trim();
        var args = root?.Element(QemuNamespace + "commandline")?.Elements(QemuNamespace + "arg")
            .Select(a => (string?)a.Attribute("value") ?? "").ToList() ?? [];
        var hole64 = root?.Element("devices")?.Elements("controller")
            .FirstOrDefault(c => (string?)c.Attribute("type") == "pci" && (string?)c.Attribute("model") == "pcie-root")
            ?.Element("pcihole64");
        return new DomainFirmwareInfo
        {
            Firmware = FirmwareOf(os, loader),
            LoaderPath = string.IsNullOrEmpty(loader) ? null : loader,
            MachineType = (string?)os?.Element("type")?.Attribute("machine"),
            CpuMode = cpu is null ? null : (string?)cpu.Attribute("mode") ?? "custom",
            CpuVendor = cpu?.Element("vendor")?.Value.Trim(),
            CpuModel = cpu?.Element("model")?.Value.Trim() is { Length: > 0 } model ? model : null,
            MaxPhysAddrMode = (string?)maxPhys?.Attribute("mode"),
            MaxPhysAddrBits = Int((string?)maxPhys?.Attribute("bits")),
            MaxPhysAddrLimit = Int((string?)maxPhys?.Attribute("limit")),
            FwCfg = ArgumentsAfter(args, "-fw_cfg").Select(ParseFwCfg).ToList(),
            QemuGlobals = ArgumentsAfter(args, "-global").ToList(),
            PciHole64Bytes = Bytes(hole64, "KiB"),
            MemoryBytes = Bytes(root?.Element("memory"), "KiB"),
            MaxMemoryBytes = Bytes(root?.Element("maxMemory"), "KiB"),
        };
    }

    private static GuestFirmware FirmwareOf(XElement? os, string? loader)
    {
        string? firmware = (string?)os?.Attribute("firmware");
        if (firmware == "efi") return GuestFirmware.Uefi;
        if (firmware == "bios") return GuestFirmware.Bios;
        if (loader is not null && (loader.Contains("OVMF", StringComparison.OrdinalIgnoreCase)
            || loader.Contains("edk2", StringComparison.OrdinalIgnoreCase) || loader.Contains("AAVMF", StringComparison.OrdinalIgnoreCase)))
            return GuestFirmware.Uefi;
        return GuestFirmware.Bios;
    }

    /// <summary>The values that follow each occurrence of an option in an argv list (QEMU takes them as the next argument).</summary>
    private static IEnumerable<string> ArgumentsAfter(List<string> args, string option)
    {
        for (int i = 0; i < args.Count; i++)
        {
            if (args[i] == option && i + 1 < args.Count) yield return args[++i];
        }
    }

    private static FwCfgArgument ParseFwCfg(string argument)
    {
        string? name = null, value = null, file = null;
        // QEMU option syntax: key=value pairs separated by commas; ",," is a literal comma inside a value.
        foreach (var part in SplitOptions(argument))
        {
            int eq = part.IndexOf('=');
            if (eq < 0) { name ??= part; continue; }
            string key = part[..eq], v = part[(eq + 1)..];
            if (key == "name") name = v;
            else if (key == "string") value = v;
            else if (key == "file") file = v;
        }
        return new FwCfgArgument(name ?? "", value, file, argument);
    }

    private static IEnumerable<string> SplitOptions(string s)
    {
        var current = new System.Text.StringBuilder();
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == ',' && i + 1 < s.Length && s[i + 1] == ',') { current.Append(','); i++; }
            else if (s[i] == ',') { yield return current.ToString(); current.Clear(); }
            else current.Append(s[i]);
        }
        yield return current.ToString();
    }

    private static int? Int(string? text) =>
        DomainXml.TryNumber(text, out ulong v) && v <= int.MaxValue ? (int)v : null;

    /// <summary>A libvirt scaled integer in bytes, read as libvirt's virScaleInteger does: case-insensitive, <c>k</c>/<c>KiB</c>
    /// = 1024, <c>KB</c> = 1000, likewise M G T P E; no unit means <paramref name="defaultUnit"/>.</summary>
    private static ulong? Bytes(XElement? e, string defaultUnit)
    {
        if (e is null || !ulong.TryParse(e.Value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong n)) return null;
        string unit = ((string?)e.Attribute("unit") ?? defaultUnit).ToLowerInvariant();
        if (unit is "b" or "byte" or "bytes") return n;
        int power = unit.Length == 0 ? -1 : "kmgtpe".IndexOf(unit[0]);
        if (power < 0) return null;
        string rest = unit[1..];
        ulong baseValue = rest is "" or "ib" ? 1024UL : rest == "b" ? 1000UL : 0;
        if (baseValue == 0) return null;
        ulong scale = 1;
        for (int i = 0; i <= power; i++) scale *= baseValue;
        try { return checked(n * scale); }
        catch (OverflowException) { return null; }
    }
}
