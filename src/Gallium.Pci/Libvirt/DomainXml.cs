using System.Globalization;
using System.Xml;
using System.Xml.Linq;

namespace Gallium.Pci.Libvirt;

/// <summary>A PCI host device in a domain's XML: a <c>&lt;hostdev mode='subsystem' type='pci'&gt;</c> or an
/// <c>&lt;interface type='hostdev'&gt;</c> (REFERENCE §5.1).</summary>
/// <param name="Address">The host function (<c>&lt;source&gt;&lt;address&gt;</c>).</param>
/// <param name="GuestAddress">The guest PCI address (<c>&lt;address type='pci'&gt;</c>), or null when libvirt has not assigned one.</param>
public sealed record PciHostdev(PciAddress Address, PciAddress? GuestAddress, bool Managed, bool IsNetworkInterface);

/// <summary>What to attach, in order, to give a VM one device's functions (REFERENCE §5.1, §5.2).</summary>
public sealed record HostdevAttachPlan
{
    /// <summary>Device XML for <see cref="ILibvirt.AttachDeviceToConfig"/>, one call each, in this order (a
    /// <c>&lt;controller&gt;</c> first when a root port had to be added).</summary>
    public required IReadOnlyList<string> DeviceXml { get; init; }
    /// <summary>Guest address of the first function; null when libvirt chooses (single-function devices).</summary>
    public PciAddress? GuestSlot { get; init; }
    /// <summary>True when the plan adds a <c>pcie-root-port</c> because the VM had no free one.</summary>
    public bool AddsRootPort { get; init; }
}

/// <summary>Reads and builds libvirt domain XML with System.Xml.Linq only: names and values are never pasted into
/// XML text, so metacharacters, quotes and non-ASCII names are safe.</summary>
public static class DomainXml
{
    /// <summary>Reads every PCI host device of a domain XML, in document order.</summary>
    public static IReadOnlyList<PciHostdev> ReadPciHostdevs(string domainXml) => ReadPciHostdevs(Parse(domainXml));

    /// <summary>The domain's PCI host devices as assignments of that VM.</summary>
    public static IReadOnlyList<VmPciAssignment> ReadAssignments(LibvirtDomain domain) =>
        ReadPciHostdevs(domain.Xml).Select(h => new VmPciAssignment
        {
            VmName = domain.Name,
            VmUuid = domain.Uuid,
            VmState = domain.State,
            IsPersistent = domain.IsPersistent,
            Address = h.Address,
            GuestAddress = h.GuestAddress?.ToString(),
            Managed = h.Managed,
            IsNetworkInterface = h.IsNetworkInterface,
        }).ToList();

    /// <summary>The <c>&lt;name&gt;</c> of a domain XML; null when the text is not a domain XML.</summary>
    public static string? TryReadName(string domainXml)
    {
        try { return Parse(domainXml).Root?.Element("name")?.Value; }
        catch (GalliumException) { return null; }
    }

    /// <summary>One <c>&lt;hostdev&gt;</c> for a host function, unmanaged by default (the module binds vfio-pci itself),
    /// with an optional guest address.</summary>
    public static string BuildHostdev(PciAddress source, bool managed = false, PciAddress? guest = null, bool multifunction = false) =>
        HostdevElement(source, managed, guest, multifunction).ToString(SaveOptions.DisableFormatting);

    /// <summary>Plans the hostdevs for functions of ONE device so that a multi-function device stays multi-function in the
    /// guest: same guest bus/slot, <c>multifunction='on'</c> on function 0 (REFERENCE §5.1). On q35 the functions go to slot 0
    /// of a free <c>pcie-root-port</c>, adding one (tagged with a <c>ua-gallium-</c> alias, so Remove can take it out again)
    /// when none is free; on i440fx to a free slot of bus 0. A single function is placed the same way, so libvirt never adds
    /// an untagged root port of its own for it; only on a layout we do not know does libvirt choose.</summary>
    /// <exception cref="ArgumentException">No functions, or functions of different devices.</exception>
    /// <exception cref="GalliumException"><c>GuestPciSlotUnavailable</c> when no guest slot can be chosen safely.</exception>
    public static HostdevAttachPlan PlanAttach(string domainXml, IEnumerable<PciAddress> functions, bool managed = false)
    {
        var sources = functions.Distinct().Order().ToList();
        if (sources.Count == 0) throw new ArgumentException("At least one PCI function is needed.", nameof(functions));
        if (sources.Any(f => f.SlotFunction0 != sources[0].SlotFunction0))
            throw new ArgumentException($"The functions {string.Join(", ", sources)} are not all of one device.", nameof(functions));
        var doc = Parse(domainXml);
        var devices = doc.Root?.Element("devices") ?? throw Invalid("it has no <devices>", doc);
        if (sources.Count == 1 && !HasKnownLayout(devices))
            return new HostdevAttachPlan { DeviceXml = [BuildHostdev(sources[0], managed)] };
        var (bus, slot, rootPort) = ChooseGuestSlot(devices, doc);
        // Keep the host's function numbers when function 0 is there (drivers expect e.g. GPU .0 + audio .1); otherwise
        // renumber from 0, since a guest only scans a slot whose function 0 exists.
        bool keepNumbers = sources[0].Function == 0;
        var xml = new List<string>();
        if (rootPort is not null) xml.Add(rootPort.ToString(SaveOptions.DisableFormatting));
        for (int i = 0; i < sources.Count; i++)
        {
            byte function = keepNumbers ? sources[i].Function : (byte)i;
            var guest = new PciAddress(0, bus, slot, function);
            xml.Add(BuildHostdev(sources[i], managed, guest, multifunction: function == 0 && sources.Count > 1));
        }
        return new HostdevAttachPlan { DeviceXml = xml, GuestSlot = new PciAddress(0, bus, slot, 0), AddsRootPort = rootPort is not null };
    }

    /// <summary>The alias prefix of the root ports Add puts in (libvirt keeps user aliases, "ua-", in the definition).</summary>
    public const string RootPortAliasPrefix = "ua-gallium-rp";

    /// <summary>Root ports Gallium added (by their alias) that no device uses any more once <paramref name="leaving"/> are gone:
    /// the detach XML of each, so Remove leaves the topology as Add found it.</summary>
    public static IReadOnlyList<string> UnusedGalliumRootPorts(string domainXml, IEnumerable<PciAddress> leaving)
    {
        var gone = leaving.ToHashSet();
        var devices = Parse(domainXml).Root?.Element("devices");
        if (devices is null) return [];
        var usedBuses = devices.Elements()
            .Where(e => !((IsPciHostdev(e) || IsHostdevInterface(e)) && SourceAddress(e) is { } a && gone.Contains(a)))
            .SelectMany(e => e.Elements("address"))
            .Where(a => (string?)a.Attribute("type") == "pci")
            .Select(ReadAddress).OfType<PciAddress>().Select(a => (ulong)a.Bus).ToHashSet();
        return devices.Elements("controller")
            .Where(c => (string?)c.Attribute("type") == "pci" && (string?)c.Attribute("model") == "pcie-root-port"
                && ((string?)c.Element("alias")?.Attribute("name"))?.StartsWith(RootPortAliasPrefix, StringComparison.Ordinal) == true
                && TryNumber((string?)c.Attribute("index"), out ulong index) && !usedBuses.Contains(index))
            .Select(c => c.ToString(SaveOptions.DisableFormatting)).ToList();
    }

    /// <summary>The definition as it will be once <paramref name="attach"/> are added and <paramref name="detach"/> removed
    /// (device XML as handed to libvirt): what the VM will hold, for sizing before anything is done. A device already there is
    /// not added twice; one already gone is not looked for.</summary>
    public static string Project(string domainXml, IEnumerable<string> attach, IEnumerable<string> detach)
    {
        var doc = Parse(domainXml);
        var devices = doc.Root!.Element("devices");
        if (devices is null) doc.Root.Add(devices = new XElement("devices"));
        foreach (var e in detach.Select(XElement.Parse))
            devices.Elements().FirstOrDefault(d => SameDevice(d, e))?.Remove();
        foreach (var e in attach.Select(XElement.Parse))
            if (!devices.Elements().Any(d => SameDevice(d, e))) devices.Add(e);
        return doc.ToString(SaveOptions.DisableFormatting);
    }

    /// <summary>libvirt's own identity of a device for attach/detach: a PCI hostdev by its source, a controller by type and
    /// index, anything else by its whole element.</summary>
    private static bool SameDevice(XElement a, XElement b)
    {
        if (a.Name != b.Name) return false;
        if ((IsPciHostdev(a) || IsHostdevInterface(a)) && (IsPciHostdev(b) || IsHostdevInterface(b)))
            return SourceAddress(a) is { } x && x == SourceAddress(b);
        if (a.Name == "controller")
            return (string?)a.Attribute("type") == (string?)b.Attribute("type")
                && TryNumber((string?)a.Attribute("index"), out ulong i) && TryNumber((string?)b.Attribute("index"), out ulong j) && i == j;
        return XNode.DeepEquals(a, b);
    }

    private static bool HasKnownLayout(XElement devices) =>
        devices.Elements("controller").Any(c => (string?)c.Attribute("type") == "pci" && (string?)c.Attribute("model") is "pcie-root" or "pci-root");

    /// <summary>The XML to detach a host function from a VM definition: the element exactly as the definition holds it
    /// (as specific as its definition, REFERENCE §5.2), or just the source address when the definition lacks it.</summary>
    public static string BuildDetach(string domainXml, PciAddress source) =>
        FindHostdevElement(Parse(domainXml), source)?.ToString(SaveOptions.DisableFormatting) ?? BuildDetach(source);

    /// <summary>The minimal detach XML: the source address, which is what libvirt matches a PCI hostdev on.</summary>
    public static string BuildDetach(PciAddress source) =>
        new XElement("hostdev", new XAttribute("mode", "subsystem"), new XAttribute("type", "pci"),
            new XElement("source", HostAddressElement(source))).ToString(SaveOptions.DisableFormatting);

    internal static XDocument Parse(string xml)
    {
        ArgumentNullException.ThrowIfNull(xml);
        var settings = new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null };
        try
        {
            using var reader = XmlReader.Create(new StringReader(xml), settings);
            return XDocument.Load(reader);
        }
        catch (XmlException e)
        {
            throw new GalliumException("DomainXmlInvalid", ErrorKind.InvalidData, $"The domain XML is not well-formed: {e.Message}", null, e);
        }
    }

    internal static IReadOnlyList<PciHostdev> ReadPciHostdevs(XDocument doc)
    {
        var result = new List<PciHostdev>();
        var devices = doc.Root?.Element("devices");
        if (devices is null) return result;
        foreach (var e in devices.Elements())
        {
            bool isInterface = IsHostdevInterface(e);
            if (!isInterface && !IsPciHostdev(e)) continue;
            // A hostdev without a readable source address is not a valid libvirt definition; nothing to report.
            if (SourceAddress(e) is not { } source) continue;
            result.Add(new PciHostdev(source, GuestAddress(e), (string?)e.Attribute("managed") == "yes", isInterface));
        }
        return result;
    }

    private static bool IsPciHostdev(XElement e) =>
        e.Name == "hostdev" && (string?)e.Attribute("type") == "pci" && ((string?)e.Attribute("mode") ?? "subsystem") == "subsystem";

    private static bool IsHostdevInterface(XElement e) => e.Name == "interface" && (string?)e.Attribute("type") == "hostdev";

    private static XElement? FindHostdevElement(XDocument doc, PciAddress source) =>
        doc.Root?.Element("devices")?.Elements()
            .FirstOrDefault(e => (IsPciHostdev(e) || IsHostdevInterface(e)) && SourceAddress(e) == source);

    private static PciAddress? SourceAddress(XElement hostdev)
    {
        var a = hostdev.Element("source")?.Element("address");
        // An interface's source address says type='pci'; a hostdev's carries no type.
        if (a is null || ((string?)a.Attribute("type") ?? "pci") != "pci") return null;
        return ReadAddress(a);
    }

    private static PciAddress? GuestAddress(XElement device) =>
        device.Elements("address").FirstOrDefault(a => (string?)a.Attribute("type") == "pci") is { } a ? ReadAddress(a) : null;

    private static PciAddress? ReadAddress(XElement a)
    {
        if (!TryNumber((string?)a.Attribute("domain") ?? "0", out ulong domain) || domain > uint.MaxValue) return null;
        if (!TryNumber((string?)a.Attribute("bus"), out ulong bus) || bus > 0xff) return null;
        if (!TryNumber((string?)a.Attribute("slot"), out ulong slot) || slot > 0x1f) return null;
        if (!TryNumber((string?)a.Attribute("function") ?? "0", out ulong function) || function > 7) return null;
        return new PciAddress((uint)domain, (byte)bus, (byte)slot, (byte)function);
    }

    /// <summary>Reads a number the way libvirt does (strtoul base 0): <c>0x</c> hex, leading <c>0</c> octal, else decimal.</summary>
    internal static bool TryNumber(string? text, out ulong value)
    {
        value = 0;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var s = text.Trim();
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            return s.Length > 2 && ulong.TryParse(s.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
        if (s.Length > 1 && s[0] == '0')
        {
            foreach (char c in s)
            {
                if (c < '0' || c > '7') return false;
                value = checked(value * 8 + (ulong)(c - '0'));
            }
            return true;
        }
        return ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    private static XElement HostdevElement(PciAddress source, bool managed, PciAddress? guest, bool multifunction) =>
        new("hostdev",
            new XAttribute("mode", "subsystem"), new XAttribute("type", "pci"), new XAttribute("managed", managed ? "yes" : "no"),
            new XElement("source", HostAddressElement(source)),
            guest is { } g ? GuestAddressElement(g, multifunction) : null);

    private static XElement HostAddressElement(PciAddress a) => new("address", AddressAttributes(a));

    private static XElement GuestAddressElement(PciAddress a, bool multifunction) =>
        new("address", new XAttribute("type", "pci"), AddressAttributes(a), multifunction ? new XAttribute("multifunction", "on") : null);

    private static XAttribute[] AddressAttributes(PciAddress a) =>
    [
        new("domain", Hex(a.Domain, 4)), new("bus", Hex(a.Bus, 2)), new("slot", Hex(a.Device, 2)), new("function", Hex(a.Function, 1)),
    ];

    private static string Hex(uint value, int digits) => "0x" + value.ToString("x" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    /// <summary>A guest bus/slot nothing else uses, plus the root port to add when there is none free.</summary>
    private static (byte Bus, byte Slot, XElement? RootPort) ChooseGuestSlot(XElement devices, XDocument doc)
    {
        var pciControllers = devices.Elements("controller").Where(c => (string?)c.Attribute("type") == "pci").ToList();
        // Guest addresses in use; a <source><address> is a host address and does not count.
        var used = devices.Descendants("address")
            .Where(a => (string?)a.Attribute("type") == "pci" && a.Parent?.Name != "source")
            .Select(ReadAddress).OfType<PciAddress>().ToList();
        var usedBuses = used.Select(a => a.Bus).ToHashSet();

        if (pciControllers.Any(c => (string?)c.Attribute("model") == "pcie-root"))
        {
            // q35: a PCIe endpoint belongs in slot 0 of a root port of its own (REFERENCE §5.1).
            var freePort = pciControllers
                .Where(c => (string?)c.Attribute("model") == "pcie-root-port")
                .Select(c => TryNumber((string?)c.Attribute("index"), out ulong i) ? i : ulong.MaxValue)
                .Where(i => i <= 0xff && !usedBuses.Contains((byte)i))
                .Order().Cast<ulong?>().FirstOrDefault();
            if (freePort is { } port) return ((byte)port, 0, null);
            return AddRootPort(pciControllers, doc);
        }
        if (pciControllers.Any(c => (string?)c.Attribute("model") == "pci-root"))
        {
            // i440fx: bus 0 slots 0 (host bridge), 1 (PIIX3) and 2 (video by convention) are taken.
            var usedSlots = used.Where(a => a.Bus == 0).Select(a => a.Device).ToHashSet();
            for (byte s = 3; s <= 0x1f; s++)
            {
                if (!usedSlots.Contains(s)) return (0, s, null);
            }
            throw SlotUnavailable(doc, "bus 0 has no free slot");
        }
        throw SlotUnavailable(doc, "it has neither a pcie-root (q35) nor a pci-root (i440fx) controller");
    }

    private static (byte, byte, XElement) AddRootPort(List<XElement> pciControllers, XDocument doc)
    {
        ulong index = pciControllers.Select(c => TryNumber((string?)c.Attribute("index"), out ulong n) ? n : 0).DefaultIfEmpty(0UL).Max() + 1;
        if (index > 0xff) throw SlotUnavailable(doc, "it already has 256 PCI controllers");
        var targets = pciControllers.Select(c => c.Element("target")).OfType<XElement>().ToList();
        ulong? Unused(string attribute, ulong from)
        {
            var taken = targets.Select(t => TryNumber((string?)t.Attribute(attribute), out ulong n) ? n : ulong.MaxValue).ToHashSet();
            for (ulong v = from; v <= 0xff; v++)
            {
                if (!taken.Contains(v)) return v;
            }
            return null;
        }
        // QEMU's chassis and port are 8-bit; chassis (with slot 0) must be unique, libvirt's own ports start at 0x8.
        ulong chassis = Unused("chassis", index) ?? Unused("chassis", 1) ?? throw SlotUnavailable(doc, "no free root-port chassis number");
        ulong port = Unused("port", 0x8) ?? throw SlotUnavailable(doc, "no free root-port port number");
        // libvirt 9.0 does not fill model name, chassis or port of an attached controller itself ([V] "Required option ... is not set").
        var rootPort = new XElement("controller",
            new XAttribute("type", "pci"), new XAttribute("index", index.ToString(CultureInfo.InvariantCulture)),
            new XAttribute("model", "pcie-root-port"),
            new XElement("model", new XAttribute("name", "pcie-root-port")),
            new XElement("target", new XAttribute("chassis", chassis.ToString(CultureInfo.InvariantCulture)),
                new XAttribute("port", "0x" + port.ToString("x", CultureInfo.InvariantCulture))),
            new XElement("alias", new XAttribute("name", RootPortAliasPrefix + index.ToString(CultureInfo.InvariantCulture))));
        return ((byte)index, 0, rootPort);
    }

    private static GalliumException SlotUnavailable(XDocument doc, string why)
    {
        string? name = doc.Root?.Element("name")?.Value;
        return new GalliumException("GuestPciSlotUnavailable", ErrorKind.ResourceUnavailable,
            $"Cannot choose a guest PCI slot for a multi-function device in VM '{name}': {why}.", name);
    }

    private static GalliumException Invalid(string why, XDocument doc)
    {
        string? name = doc.Root?.Element("name")?.Value;
        return new GalliumException("DomainXmlInvalid", ErrorKind.InvalidData, $"The XML of VM '{name}' is not a domain definition: {why}.", name);
    }
}
