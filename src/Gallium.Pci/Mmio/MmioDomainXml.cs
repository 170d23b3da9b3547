using System.Globalization;
using System.Xml;
using System.Xml.Linq;

namespace Gallium.Pci.Mmio;

/// <summary>Reads the MMIO-relevant settings of a libvirt domain XML and applies or removes the large-BAR fix.
/// Pure string-to-string functions; the libvirt binding defines the result (REFERENCE §5.2, §6.3).</summary>
/// <remarks>Everything we change is recorded in <c>&lt;metadata&gt;&lt;gallium:mmio&gt;</c> with the prior values, so
/// <see cref="RemoveFix"/> undoes only our edits and leaves the user's own settings and qemu:args alone.</remarks>
public static class MmioDomainXml
{
    public const string QemuNamespace = "http://libvirt.org/schemas/domain/qemu/1.0";
    public const string GalliumNamespace = "https://gallium.dev/pci/1";
    /// <summary>The fw_cfg file OVMF reads its aperture size from (REFERENCE §6.1).</summary>
    public const string ApertureFwCfgName = "opt/ovmf/X-PciMmio64Mb";

    static readonly XNamespace Qemu = QemuNamespace;
    static readonly XNamespace Gallium = GalliumNamespace;
    const string None = "none";

    /// <summary>Reads the firmware, accelerator, CPU, maxphysaddr, forced aperture, memory and root ports of a domain.</summary>
    /// <exception cref="GalliumException"><c>DomainXmlInvalid</c> when the text is not a domain definition.</exception>
    public static VmMmioSettings ReadSettings(string domainXml)
    {
        var root = Parse(domainXml).Root!;
        var os = root.Element("os");
        var cpu = root.Element("cpu");
        var model = cpu?.Element("model");
        var mpa = cpu?.Element("maxphysaddr");
        var maxMemory = root.Element("maxMemory");
        return new VmMmioSettings
        {
            Name = root.Element("name")?.Value.Trim() ?? "",
            Accelerator = (string?)root.Attribute("type") == "qemu" ? VmAccelerator.Tcg : VmAccelerator.Kvm,
            Firmware = IsUefi(os) ? VmFirmware.Ovmf : VmFirmware.SeaBios,
            CpuMode = cpu is null ? VmCpuMode.None : (string?)cpu.Attribute("mode") switch
            {
                "host-passthrough" => VmCpuMode.HostPassthrough,
                "host-model" => VmCpuMode.HostModel,
                "maximum" => VmCpuMode.Maximum,
                _ => VmCpuMode.Custom,
            },
            CpuModel = model is null || string.IsNullOrWhiteSpace(model.Value) ? null : model.Value.Trim(),
            CpuVendorId = (string?)model?.Attribute("vendor_id"),
            GigabytePagesFeature = cpu?.Elements("feature").LastOrDefault(f => (string?)f.Attribute("name") == "pdpe1gb") is { } f
                ? (string?)f.Attribute("policy") is "require" or "force" or null
                : null,
            MaxPhysAddr = ReadMaxPhysAddr(mpa),
            OvmfApertureMiB = (string?)FindApertureArg(root)?.Attribute("value") is string arg && ParseApertureArg(arg) is ulong mib ? mib : null,
            MemoryBytes = Bytes(root.Element("memory")) ?? 0,
            MaxMemoryBytes = Bytes(maxMemory) ?? 0,
            MemorySlots = int.TryParse((string?)maxMemory?.Attribute("slots"), NumberStyles.None, CultureInfo.InvariantCulture, out int slots) ? slots : 0,
            HotplugRootPorts = root.Element("devices")?.Elements("controller").Count(c =>
                (string?)c.Attribute("type") == "pci"
                && (string?)c.Attribute("model") is "pcie-root-port" or "pcie-switch-downstream-port"
                && (string?)c.Element("target")?.Attribute("hotplug") != "off") ?? 0,
        };
    }

    /// <summary>Applies a plan's changes. Idempotent: applying the same plan again changes nothing. A plan that needs no fix
    /// returns the text unchanged; a refused plan throws its refusal.</summary>
    public static string ApplyFix(string domainXml, MmioPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        plan.ThrowIfRefused();
        if (plan.Changes.Count == 0) return domainXml;
        var doc = Parse(domainXml);
        var root = doc.Root!;
        var before = doc.ToString(SaveOptions.DisableFormatting);
        var marker = Marker(root, create: true)!;
        foreach (var change in plan.Changes)
        {
            switch (change.Kind)
            {
                case MmioChangeKind.MaxPhysAddr when change.MaxPhysAddr is { } mpa:
                    SetMaxPhysAddr(root, marker, mpa);
                    break;
                case MmioChangeKind.OvmfAperture when change.ApertureMiB is ulong mib:
                    SetAperture(root, marker, mib);
                    break;
                default:
                    throw new ArgumentException($"Change '{change.Description}' carries no value.", nameof(plan));
            }
        }
        string after = doc.ToString(SaveOptions.DisableFormatting);
        return after == before ? domainXml : after;
    }

    /// <summary>Removes what <see cref="ApplyFix"/> added and restores what it replaced; settings the user changed since
    /// are left as they are. Text without our marker is returned unchanged.</summary>
    public static string RemoveFix(string domainXml)
    {
        var doc = Parse(domainXml);
        var root = doc.Root!;
        var marker = Marker(root, create: false);
        if (marker is null) return domainXml;

        if (marker.Element(Gallium + "maxphysaddr") is { } mpaRecord) RestoreMaxPhysAddr(root, marker, mpaRecord);
        if (marker.Element(Gallium + "aperture") is { } apRecord) RestoreAperture(root, marker, apRecord);

        var metadata = marker.Parent!;
        RemoveWithIndent(marker);
        if ((string?)marker.Attribute("metadata-added") == "yes" && !metadata.Elements().Any()) RemoveWithIndent(metadata);
        return doc.ToString(SaveOptions.DisableFormatting);
    }

    /// <summary>True when the definition carries Gallium's record of an MMIO fix (<c>&lt;gallium:mmio&gt;</c>).</summary>
    public static bool HasFix(string domainXml) => Marker(Parse(domainXml).Root!, create: false) is not null;

    /// <summary>What decides the window and what Gallium recorded about it, as one comparable text: the CPU's maxphysaddr,
    /// the forced OVMF aperture and the marker. Two definitions with the same fingerprint need no define between them,
    /// however libvirt formatted the rest.</summary>
    public static string FixFingerprint(string domainXml)
    {
        var root = Parse(domainXml).Root!;
        var mpa = root.Element("cpu")?.Element("maxphysaddr");
        string mpaText = mpa is null ? "-" : string.Join(",", mpa.Attributes().OrderBy(a => a.Name.LocalName, StringComparer.Ordinal).Select(a => $"{a.Name.LocalName}={a.Value}"));
        string aperture = (string?)FindApertureArg(root)?.Attribute("value") ?? "-";
        var marker = Marker(root, create: false);
        string markerText = marker is null ? "-" : Canonical(marker);
        return $"maxphysaddr[{mpaText}] aperture[{aperture}] marker[{markerText}]";
    }

    /// <summary>The fix Gallium's marker records (the maxphysaddr and aperture it set), as a plan <see cref="ApplyFix"/> makes
    /// again on another text of the same definition: how an MMIO edit is undone without redefining a stale copy (which would
    /// lose what other tools wrote since). Null when the definition carries no Gallium fix.</summary>
    public static MmioPlan? RecordedFix(string domainXml)
    {
        var root = Parse(domainXml).Root!;
        var marker = Marker(root, create: false);
        if (marker is null) return null;
        var changes = new List<MmioChange>();
        if (marker.Element(Gallium + "maxphysaddr") is { } m)
        {
            int? bits = int.TryParse((string?)m.Attribute("bits"), NumberStyles.None, CultureInfo.InvariantCulture, out int b) ? b : null;
            var mpa = (string?)m.Attribute("mode") == "emulate" ? new MaxPhysAddr(MaxPhysAddrMode.Emulate, bits) : new MaxPhysAddr(MaxPhysAddrMode.Passthrough);
            changes.Add(new MmioChange(MmioChangeKind.MaxPhysAddr, $"set {mpa} in <cpu>") { MaxPhysAddr = mpa });
        }
        if (marker.Element(Gallium + "aperture") is { } a
            && ulong.TryParse((string?)a.Attribute("mib"), NumberStyles.None, CultureInfo.InvariantCulture, out ulong mib))
            changes.Add(new MmioChange(MmioChangeKind.OvmfAperture, $"OVMF aperture {mib} MiB") { ApertureMiB = mib });
        string name = root.Element("name")?.Value ?? "";
        return new MmioPlan { VmName = name, Outcome = MmioPlanOutcome.FixNeeded, Changes = changes, Reason = "the fix Gallium recorded" };
    }

    /// <summary><paramref name="intoXml"/> with the Gallium fix that <paramref name="fromXml"/> carries (or none), everything
    /// else left as it is.</summary>
    public static string TransplantFix(string fromXml, string intoXml)
    {
        string unfixed = RemoveFix(intoXml);
        return RecordedFix(fromXml) is { } plan ? ApplyFix(unfixed, plan) : unfixed;
    }

    static string Canonical(XElement e) =>
        $"<{e.Name.LocalName} {string.Join(" ", e.Attributes().Where(a => !a.IsNamespaceDeclaration).OrderBy(a => a.Name.LocalName, StringComparer.Ordinal).Select(a => $"{a.Name.LocalName}={a.Value}"))}>"
        + string.Concat(e.Elements().Select(Canonical)) + "</>";

    // ---- maxphysaddr -------------------------------------------------------------------------------------------

    static void SetMaxPhysAddr(XElement root, XElement marker, MaxPhysAddr wanted)
    {
        var cpu = root.Element("cpu");
        if (cpu is null)
        {
            // No <cpu> means qemu64; a <cpu> holding only maxphysaddr keeps that model (libvirt: -cpu qemu64,phys-bits=N).
            cpu = new XElement("cpu");
            InsertAfterFirst(root, cpu, "features", "os", "vcpu", "memory", "name");
            marker.SetAttributeValue("cpu-added", "yes");
        }
        var element = cpu.Element("maxphysaddr");
        var record = marker.Element(Gallium + "maxphysaddr");
        if (record is null)
        {
            record = new XElement(Gallium + "maxphysaddr");
            if (element is null) record.SetAttributeValue("prior", None);
            else
                foreach (var a in element.Attributes())
                    record.SetAttributeValue("prior-" + a.Name.LocalName, a.Value);
            AppendIndented(marker, record);
        }
        if (element is null)
        {
            element = new XElement("maxphysaddr");
            AppendIndented(cpu, element);
        }
        element.ReplaceAttributes(MaxPhysAddrAttributes(wanted));
        record.SetAttributeValue("mode", wanted.Mode == MaxPhysAddrMode.Passthrough ? "passthrough" : "emulate");
        record.SetAttributeValue("bits", wanted.Bits?.ToString(CultureInfo.InvariantCulture));
    }

    static void RestoreMaxPhysAddr(XElement root, XElement marker, XElement record)
    {
        var cpu = root.Element("cpu");
        var element = cpu?.Element("maxphysaddr");
        if (cpu is null || element is null) return;
        if ((string?)element.Attribute("mode") != (string?)record.Attribute("mode")
            || (string?)element.Attribute("bits") != (string?)record.Attribute("bits"))
            return;   // changed since we set it: the user's now
        if ((string?)record.Attribute("prior") == None) RemoveWithIndent(element);
        else
            element.ReplaceAttributes(record.Attributes()
                .Where(a => a.Name.LocalName.StartsWith("prior-", StringComparison.Ordinal))
                .Select(a => new XAttribute(a.Name.LocalName["prior-".Length..], a.Value)));
        // libvirt fills an added <cpu> with mode='custom' and <model>qemu64</model>: both mean "no <cpu>".
        if ((string?)marker.Attribute("cpu-added") == "yes"
            && cpu.Elements().All(e => e.Name == "model" && e.Value.Trim() == "qemu64"))
            RemoveWithIndent(cpu);
    }

    static IEnumerable<XAttribute> MaxPhysAddrAttributes(MaxPhysAddr m) => m.Mode == MaxPhysAddrMode.Passthrough
        ? [new XAttribute("mode", "passthrough")]
        : [new XAttribute("mode", "emulate"), new XAttribute("bits", m.Bits ?? throw new ArgumentException("emulate needs bits (libvirt 9.0)."))];

    static MaxPhysAddr? ReadMaxPhysAddr(XElement? e)
    {
        if (e is null) return null;
        int? bits = int.TryParse((string?)e.Attribute("bits"), NumberStyles.None, CultureInfo.InvariantCulture, out int b) ? b : null;
        return (string?)e.Attribute("mode") switch
        {
            "passthrough" => new MaxPhysAddr(MaxPhysAddrMode.Passthrough, bits),
            "emulate" => new MaxPhysAddr(MaxPhysAddrMode.Emulate, bits),
            _ => null,
        };
    }

    // ---- OVMF aperture via <qemu:commandline> ------------------------------------------------------------------

    static void SetAperture(XElement root, XElement marker, ulong mib)
    {
        string value = $"name={ApertureFwCfgName},string={mib.ToString(CultureInfo.InvariantCulture)}";
        var record = marker.Element(Gallium + "aperture");
        var arg = FindApertureArg(root);
        if (record is null)
        {
            record = new XElement(Gallium + "aperture", new XAttribute("prior", arg is null ? None : (string?)arg.Attribute("value") ?? ""));
            AppendIndented(marker, record);
        }
        record.SetAttributeValue("mib", mib.ToString(CultureInfo.InvariantCulture));
        if (arg is not null)
        {
            arg.SetAttributeValue("value", value);   // update the user's arg in place, never a second -fw_cfg
            return;
        }
        // libvirt wants the namespace declared on <domain> (REFERENCE §6.3).
        if (!root.Attributes().Any(a => a.IsNamespaceDeclaration && a.Value == QemuNamespace))
        {
            root.SetAttributeValue(XNamespace.Xmlns + "qemu", QemuNamespace);
            marker.SetAttributeValue("ns-added", "yes");
        }
        var commandline = root.Element(Qemu + "commandline");
        if (commandline is null)
        {
            commandline = new XElement(Qemu + "commandline");
            AppendIndented(root, commandline);
            marker.SetAttributeValue("commandline-added", "yes");
        }
        AppendIndented(commandline, new XElement(Qemu + "arg", new XAttribute("value", "-fw_cfg")));
        AppendIndented(commandline, new XElement(Qemu + "arg", new XAttribute("value", value)));
    }

    static void RestoreAperture(XElement root, XElement marker, XElement record)
    {
        var arg = FindApertureArg(root);
        if (arg is null || (string?)arg.Attribute("value") != $"name={ApertureFwCfgName},string={(string?)record.Attribute("mib")}") return;
        string? prior = (string?)record.Attribute("prior");
        if (prior is not null && prior != None)
        {
            arg.SetAttributeValue("value", prior);
            return;
        }
        var flag = arg.ElementsBeforeSelf().LastOrDefault();
        var commandline = arg.Parent!;
        RemoveWithIndent(arg);
        if (flag is not null && flag.Name == Qemu + "arg" && (string?)flag.Attribute("value") == "-fw_cfg") RemoveWithIndent(flag);
        if ((string?)marker.Attribute("commandline-added") == "yes" && !commandline.Elements().Any()) RemoveWithIndent(commandline);
        if ((string?)marker.Attribute("ns-added") == "yes" && !root.Descendants().Any(e => e.Name.Namespace == Qemu))
            root.Attributes().Where(a => a.IsNamespaceDeclaration && a.Value == QemuNamespace).Remove();
    }

    /// <summary>The <c>&lt;qemu:arg&gt;</c> holding <c>name=opt/ovmf/X-PciMmio64Mb,…</c> right after a <c>-fw_cfg</c>.</summary>
    static XElement? FindApertureArg(XElement root)
    {
        var args = root.Element(Qemu + "commandline")?.Elements(Qemu + "arg").ToList();
        if (args is null) return null;
        for (int i = 1; i < args.Count; i++)
            if ((string?)args[i - 1].Attribute("value") == "-fw_cfg"
                && ((string?)args[i].Attribute("value"))?.StartsWith($"name={ApertureFwCfgName},", StringComparison.Ordinal) == true)
                return args[i];
        return null;
    }

    static ulong? ParseApertureArg(string arg)
    {
        foreach (string part in arg.Split(','))
            if (part.StartsWith("string=", StringComparison.Ordinal)
                && ulong.TryParse(part["string=".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out ulong mib))
                return mib;
        return null;
    }

    // ---- reading helpers ---------------------------------------------------------------------------------------

    static XDocument Parse(string domainXml)
    {
        ArgumentNullException.ThrowIfNull(domainXml);
        XDocument doc;
        try { doc = XDocument.Parse(domainXml, LoadOptions.PreserveWhitespace); }
        catch (XmlException e)
        {
            throw new GalliumException("DomainXmlInvalid", ErrorKind.InvalidData, $"The domain XML does not parse: {e.Message}", null, e);
        }
        if (doc.Root?.Name != "domain")
            throw new GalliumException("DomainXmlInvalid", ErrorKind.InvalidData,
                $"The XML is not a libvirt domain definition (root element <{doc.Root?.Name}>).");
        return doc;
    }

    /// <summary>UEFI when <c>&lt;os firmware='efi'&gt;</c>, or a pflash/OVMF/edk2 loader (REFERENCE §6.1: OVMF decides the window).</summary>
    static bool IsUefi(XElement? os)
    {
        if (os is null) return false;
        if ((string?)os.Attribute("firmware") == "efi") return true;
        var loader = os.Element("loader");
        if (loader is null) return false;
        string path = loader.Value;
        return (string?)loader.Attribute("type") == "pflash"
            || path.Contains("OVMF", StringComparison.OrdinalIgnoreCase)
            || path.Contains("edk2", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>A libvirt scaled integer (<c>unit</c> defaults to KiB; KB/MB/GB are decimal).</summary>
    static ulong? Bytes(XElement? e)
    {
        if (e is null || !ulong.TryParse(e.Value.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong n)) return null;
        ulong scale = ((string?)e.Attribute("unit") ?? "KiB") switch
        {
            "b" or "bytes" => 1,
            "KB" => 1000, "k" or "K" or "KiB" => 1UL << 10,
            "MB" => 1000_000, "M" or "MiB" => 1UL << 20,
            "GB" => 1000_000_000, "G" or "GiB" => 1UL << 30,
            "TB" => 1000_000_000_000, "T" or "TiB" => 1UL << 40,
            _ => 1UL << 10,
        };
        return n * scale;
    }

    // ---- marker and layout -------------------------------------------------------------------------------------

    static XElement? Marker(XElement root, bool create)
    {
        var metadata = root.Element("metadata");
        var marker = metadata?.Element(Gallium + "mmio");
        if (marker is not null || !create) return marker;
        bool metadataAdded = false;
        if (metadata is null)
        {
            metadata = new XElement("metadata");
            InsertAfterFirst(root, metadata, "description", "title", "uuid", "name");
            metadataAdded = true;
        }
        marker = new XElement(Gallium + "mmio",
            new XAttribute(XNamespace.Xmlns + "gallium", GalliumNamespace),
            new XAttribute("version", "1"));
        if (metadataAdded) marker.SetAttributeValue("metadata-added", "yes");
        AppendIndented(metadata, marker);
        return marker;
    }

    /// <summary>Inserts <paramref name="element"/> after the first of the named siblings that exists, else appends it.</summary>
    static void InsertAfterFirst(XElement parent, XElement element, params string[] after)
    {
        var anchor = after.Select(n => parent.Element(n)).FirstOrDefault(e => e is not null);
        if (anchor is null) { AppendIndented(parent, element); return; }
        if (IsLayoutIndented(parent)) anchor.AddAfterSelf(new XText("\n" + Indent(anchor)), element);
        else anchor.AddAfterSelf(element);
    }

    /// <summary>Appends a child with the parent's indentation style, so a pretty-printed definition stays pretty.</summary>
    static void AppendIndented(XElement parent, XElement child)
    {
        string inner = "\n" + Indent(parent) + "  ";
        if (!IsLayoutIndented(parent.Document?.Root ?? parent)) { parent.Add(child); return; }
        if (parent.LastNode is XText trailing && string.IsNullOrWhiteSpace(trailing.Value))
            trailing.AddBeforeSelf(new XText(inner), child);
        else
            parent.Add(new XText(inner), child, new XText("\n" + Indent(parent)));
    }

    /// <summary>Removes an element and the whitespace that introduced it; an element left with only whitespace is emptied.</summary>
    static void RemoveWithIndent(XElement element)
    {
        var parent = element.Parent;
        if (element.PreviousNode is XText ws && string.IsNullOrWhiteSpace(ws.Value)) ws.Remove();
        element.Remove();
        if (parent is not null && parent.Nodes().All(n => n is XText t && string.IsNullOrWhiteSpace(t.Value)))
            parent.RemoveNodes();
    }

    static string Indent(XElement e) =>
        e.PreviousNode is XText t && string.IsNullOrWhiteSpace(t.Value) ? t.Value[(t.Value.LastIndexOf('\n') + 1)..] : "";

    static bool IsLayoutIndented(XElement e) => e.Nodes().OfType<XText>().Any(t => t.Value.Contains('\n'));
}
