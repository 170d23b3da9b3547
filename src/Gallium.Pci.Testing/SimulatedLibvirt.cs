using System.Globalization;
using System.Xml.Linq;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;

namespace Gallium.Pci.Testing;

/// <summary>A simulated host's libvirt: libvirt's own test driver (<c>test:///&lt;node file&gt;</c>, built into libvirt.so, no
/// daemon, no real VM) behind ONE connection held for the host's lifetime. The test driver keeps its state per connection,
/// so every command of a session must go through this one to see what the command before it did; <see cref="Open"/>
/// hands out views of it that the commands may dispose.</summary>
/// <remarks>Two things the qemu driver does and the test driver (libvirt 9.0) does not are done here, so that VM commands
/// run against it as against qemu:///system: device attach and detach to the persistent definition (as a define of the
/// definition edited the way libvirt edits it), and keeping the definition's own domain type and &lt;qemu:commandline&gt;
/// (the test driver accepts only type='test' and drops other drivers' namespaces: both are kept in &lt;metadata&gt; and
/// put back in every definition read). Everything else (parsing and checking the XML, UUIDs, states, listing) is the
/// test driver's.</remarks>
public sealed class SimulatedLibvirt : ILibvirtConnector, IDisposable
{
    /// <summary>The &lt;metadata&gt; element that keeps what the test driver would drop.</summary>
    public const string KeepNamespace = "https://gallium.dev/pci/simulated-libvirt/1";

    private static readonly XNamespace Keep = KeepNamespace;
    private static readonly XNamespace Qemu = MmioDomainXml.QemuNamespace;

    private readonly LibvirtConnection _connection;
    private readonly object _gate = new();
    private bool _closed;

    private SimulatedLibvirt(LibvirtConnection connection)
    {
        _connection = connection;
        DefaultUri = connection.Uri;
    }

    /// <summary>Opens the test driver over <paramref name="nodeFile"/> (a libvirt test-driver &lt;node&gt; file; an empty
    /// &lt;node/&gt; is written when it does not exist).</summary>
    public static SimulatedLibvirt Open(string nodeFile)
    {
        ArgumentException.ThrowIfNullOrEmpty(nodeFile);
        string path = Path.GetFullPath(nodeFile);
        if (!File.Exists(path))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, "<node/>\n");
        }
        return new SimulatedLibvirt(LibvirtConnection.Open(UriFor(path)));
    }

    /// <summary><c>test://</c> and the file's absolute path, percent-encoded as a URI path.</summary>
    public static string UriFor(string nodeFile) => "test://" + new Uri(Path.GetFullPath(nodeFile)).AbsolutePath;

    /// <summary>The test driver's URI: VM commands given no -Uri use it.</summary>
    public string DefaultUri { get; }

    /// <summary>The test driver too: the simulated host's VMs are all in it.</summary>
    public string SystemUri => DefaultUri;

    /// <summary>This libvirt for <paramref name="uri"/> null or <see cref="DefaultUri"/>; any other URI is opened for real.</summary>
    public ILibvirt Open(string? uri, bool readOnly = false)
    {
        if (uri is not null && !string.Equals(LibvirtUri.Resolve(uri), DefaultUri, StringComparison.Ordinal))
            return LibvirtConnection.Open(uri, readOnly);
        lock (_gate) ObjectDisposedException.ThrowIf(_closed, this);
        return new View(this, readOnly);
    }

    /// <summary>Defines a stopped VM the way the presets' VMs are: q35, OVMF (or SeaBIOS), KVM, QEMU's default CPU model (so
    /// 40 physical address bits: OVMF's classic 32 GiB window, too small for a large-BAR GPU without the MMIO fix), free PCIe
    /// root ports.</summary>
    public LibvirtDomain DefineVm(string name, bool uefi = true, int memoryGiB = 16, int rootPorts = 4)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var os = new XElement("os", new XElement("type", new XAttribute("arch", "x86_64"), new XAttribute("machine", "q35"), "hvm"));
        if (uefi)
        {
            os.Add(new XElement("loader", new XAttribute("readonly", "yes"), new XAttribute("type", "pflash"), "/usr/share/OVMF/OVMF_CODE_4M.fd"),
                new XElement("nvram", new XAttribute("template", "/usr/share/OVMF/OVMF_VARS_4M.fd"), $"/var/lib/libvirt/qemu/nvram/{name}_VARS.fd"));
        }
        var devices = new XElement("devices", new XElement("controller", new XAttribute("type", "pci"), new XAttribute("index", "0"), new XAttribute("model", "pcie-root")));
        for (int i = 1; i <= rootPorts; i++)
            devices.Add(new XElement("controller", new XAttribute("type", "pci"), new XAttribute("index", i), new XAttribute("model", "pcie-root-port")));
        var domain = new XElement("domain", new XAttribute("type", "kvm"),
            new XElement("name", name),
            new XElement("memory", new XAttribute("unit", "GiB"), memoryGiB),
            new XElement("vcpu", 8),
            os,
            new XElement("features", new XElement("acpi"), new XElement("apic")),
            devices);
        return Define(domain.ToString());
    }

    /// <summary>Closes the test driver's connection: its VMs are gone.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_closed) return;
            _closed = true;
            _connection.Dispose();
        }
    }

    public override string ToString() => DefaultUri;

    // ---- the operations every view shares ------------------------------------------------------------------------------

    private IReadOnlyList<LibvirtDomain> List()
    {
        lock (_gate) return _connection.ListDomains().Select(FromTestDriver).ToArray();
    }

    private LibvirtDomain Get(string vmName)
    {
        lock (_gate) return FromTestDriver(_connection.GetDomain(vmName));
    }

    // The persistent definition as the qemu driver would return it (the test driver has no secrets to add).
    private string Definition(string vmName)
    {
        lock (_gate) return RestoreDefinition(_connection.GetDefinition(vmName));
    }

    private LibvirtDomain Define(string domainXml)
    {
        lock (_gate) return FromTestDriver(_connection.DefineDomain(ToTestDriver(domainXml)));
    }

    private LibvirtDomain CreateTransient(string domainXml, bool paused)
    {
        lock (_gate) return FromTestDriver(_connection.CreateTransientDomain(ToTestDriver(domainXml), paused));
    }

    // What virDomainAttachDeviceFlags(VIR_DOMAIN_AFFECT_CONFIG) does: the device joins the persistent definition; one
    // already there (a hostdev of the same host function) is refused with code 55 (REFERENCE §5.2).
    private void Attach(string vmName, string deviceXml)
    {
        lock (_gate)
        {
            var (doc, devices) = PersistentDefinition(vmName, "add the device to");
            var device = ParseDevice(deviceXml);
            if (devices.Elements(device.Name).FirstOrDefault(d => SameDevice(d, device)) is not null)
                throw Refused(vmName, "add the device to", LibvirtErrorCode.OperationInvalid, "device is already in the domain configuration");
            devices.Add(device);
            _connection.DefineDomain(ToTestDriver(doc.ToString()));
        }
    }

    // What virDomainDetachDeviceFlags(VIR_DOMAIN_AFFECT_CONFIG) does: a device not in the definition is code 99.
    private void Detach(string vmName, string deviceXml)
    {
        lock (_gate)
        {
            var (doc, devices) = PersistentDefinition(vmName, "remove the device from");
            var device = ParseDevice(deviceXml);
            var present = devices.Elements(device.Name).FirstOrDefault(d => SameDevice(d, device))
                ?? throw Refused(vmName, "remove the device from", LibvirtErrorCode.DeviceMissing, "device not found in the domain configuration");
            present.Remove();
            _connection.DefineDomain(ToTestDriver(doc.ToString()));
        }
    }

    private (XDocument Doc, XElement Devices) PersistentDefinition(string vmName, string operation)
    {
        var domain = FromTestDriver(_connection.GetDomain(vmName));
        if (!domain.IsPersistent)
            throw Refused(vmName, operation, LibvirtErrorCode.OperationInvalid, "cannot modify device on transient domain");
        var doc = XDocument.Parse(domain.Xml);
        var devices = doc.Root!.Element("devices");
        if (devices is null) doc.Root.Add(devices = new XElement("devices"));
        return (doc, devices);
    }

    private static XElement ParseDevice(string deviceXml)
    {
        try { return XElement.Parse(deviceXml); }
        catch (System.Xml.XmlException e)
        {
            throw new LibvirtOperationFailedException("parse the device XML", deviceXml,
                new LibvirtError(LibvirtErrorCode.XmlDetail, LibvirtErrorDomain.Domain, e.Message));
        }
    }

    private static LibvirtOperationFailedException Refused(string vmName, string operation, LibvirtErrorCode code, string message) =>
        new($"{operation} the definition of VM '{vmName}'", vmName, new LibvirtError(code, LibvirtErrorDomain.Domain, $"Requested operation is not valid: {message}"));

    // libvirt finds a device by its identity, not its text: a PCI hostdev by its host address, a controller by type and
    // index, anything else by its whole content.
    private static bool SameDevice(XElement present, XElement wanted)
    {
        if (wanted.Name.LocalName == "hostdev" && HostAddress(wanted) is { } address) return HostAddress(present) == address;
        if (wanted.Name.LocalName == "controller" && (string?)wanted.Attribute("index") is { } index)
            return (string?)present.Attribute("type") == (string?)wanted.Attribute("type") && (string?)present.Attribute("index") == index;
        return XNode.DeepEquals(Normalized(present), Normalized(wanted));
    }

    private static PciAddress? HostAddress(XElement hostdev)
    {
        var a = hostdev.Element("source")?.Element("address");
        if (a is null) return null;
        uint Hex(string name) => uint.Parse(((string?)a.Attribute(name) ?? "0").Replace("0x", "", StringComparison.OrdinalIgnoreCase),
            NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        return new PciAddress(Hex("domain"), (byte)Hex("bus"), (byte)Hex("slot"), (byte)Hex("function"));
    }

    private static XElement Normalized(XElement e) => new(e.Name, e.Attributes().OrderBy(a => a.Name.ToString(), StringComparer.Ordinal),
        e.Elements().Select(Normalized), e.HasElements ? null : e.Value.Trim());

    // ---- what the test driver would drop ---------------------------------------------------------------------------------

    /// <summary>The definition as the test driver takes it: type='test', the real type and &lt;qemu:commandline&gt; kept in
    /// &lt;metadata&gt;.</summary>
    internal static string ToTestDriver(string domainXml)
    {
        var doc = XDocument.Parse(domainXml);
        var root = doc.Root!;
        string type = (string?)root.Attribute("type") ?? "test";
        var commandLines = root.Elements(Qemu + "commandline").ToList();
        var metadata = root.Element("metadata");
        metadata?.Elements(Keep + "kept").Remove();
        if (type == "test" && commandLines.Count == 0) return doc.ToString();
        bool added = metadata is null;
        if (metadata is null)
        {
            metadata = new XElement("metadata");
            // <metadata> sits after the name/uuid/title/description elements (libvirt's schema order).
            var after = root.Elements().LastOrDefault(e => e.Name.LocalName is "name" or "uuid" or "genid" or "title" or "description");
            if (after is null) root.AddFirst(metadata); else after.AddAfterSelf(metadata);
        }
        var kept = new XElement(Keep + "kept", new XAttribute(XNamespace.Xmlns + "gallium-sim", KeepNamespace), new XAttribute("type", type));
        if (added) kept.SetAttributeValue("metadata-added", "yes");
        foreach (var c in commandLines)
        {
            c.Remove();
            kept.Add(c);
        }
        metadata.Add(kept);
        root.SetAttributeValue("type", "test");
        return doc.ToString();
    }

    /// <summary>The definition as the qemu driver would have kept it: its own type and &lt;qemu:commandline&gt; back.</summary>
    internal static string RestoreDefinition(string testDriverXml)
    {
        var doc = XDocument.Parse(testDriverXml);
        var root = doc.Root!;
        var metadata = root.Element("metadata");
        var kept = metadata?.Element(Keep + "kept");
        if (kept is null) return testDriverXml;
        root.SetAttributeValue("type", (string?)kept.Attribute("type") ?? "test");
        var commandLines = kept.Elements(Qemu + "commandline").ToList();
        if (commandLines.Count > 0) root.SetAttributeValue(XNamespace.Xmlns + "qemu", MmioDomainXml.QemuNamespace);
        foreach (var c in commandLines) root.Add(new XElement(c));
        kept.Remove();
        if ((string?)kept.Attribute("metadata-added") == "yes" && !metadata!.HasElements) metadata.Remove();
        return doc.ToString();
    }

    private static LibvirtDomain FromTestDriver(LibvirtDomain domain) => domain with { Xml = RestoreDefinition(domain.Xml) };

    /// <summary>What a command gets from <see cref="Open"/>: disposing it leaves the shared connection open. A read-only view
    /// refuses changes as libvirt does on a read-only connection (code 29, OperationDenied).</summary>
    private sealed class View(SimulatedLibvirt owner, bool readOnly) : ILibvirt
    {
        public string Uri => owner.DefaultUri;
        public Version LibraryVersion => owner._connection.LibraryVersion;
        public IReadOnlyList<LibvirtDomain> ListDomains() => owner.List();
        public LibvirtDomain GetDomain(string vmName) => owner.Get(vmName);
        // VIR_DOMAIN_XML_SECURE is refused on a read-only connection (REFERENCE §8.3).
        public string GetDefinition(string vmName) { Writable($"read the definition of VM '{vmName}' with secrets"); return owner.Definition(vmName); }
        public void AttachDeviceToConfig(string vmName, string deviceXml) { Writable($"add a device to VM '{vmName}'"); owner.Attach(vmName, deviceXml); }
        public void DetachDeviceFromConfig(string vmName, string deviceXml) { Writable($"remove a device from VM '{vmName}'"); owner.Detach(vmName, deviceXml); }
        public LibvirtDomain DefineDomain(string domainXml) { Writable("define a VM"); return owner.Define(domainXml); }
        public LibvirtDomain CreateTransientDomain(string domainXml, bool paused) { Writable("create a VM"); return owner.CreateTransient(domainXml, paused); }
        public void StartDomain(string vmName, bool paused) { Writable($"start VM '{vmName}'"); lock (owner._gate) owner._connection.StartDomain(vmName, paused); }
        public void DestroyDomain(string vmName) { Writable($"stop VM '{vmName}'"); lock (owner._gate) owner._connection.DestroyDomain(vmName); }
        public void UndefineDomain(string vmName) { Writable($"undefine VM '{vmName}'"); lock (owner._gate) owner._connection.UndefineDomain(vmName); }
        public void Dispose() { }
        public override string ToString() => Uri;

        private void Writable(string operation)
        {
            if (readOnly)
                throw new LibvirtOperationFailedException(operation, Uri,
                    new LibvirtError(LibvirtErrorCode.OperationDenied, LibvirtErrorDomain.None, "operation forbidden: read only access prevents " + operation));
        }
    }
}
