using System.Xml.Linq;
using Gallium.Pci.Host;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;

namespace Gallium.Pci.Assignments;

public enum VmDeviceAction { Add, Remove, Repair }

/// <summary>One libvirt edit of a VM's persistent definition, with what undoes it.</summary>
/// <param name="Xml">Device XML for attach (Add) or detach (Remove).</param>
/// <param name="Description">One line for -WhatIf and -Verbose.</param>
public sealed record VmDeviceEdit(PciAddress? Source, string Xml, string Description, bool IsController = false);

/// <summary>What Add/Remove/Repair will do to one VM: hostdev edits through libvirt's atomic attach/detach, and the
/// large-BAR 64-bit MMIO window fix (REFERENCE §6) when the VM's devices need more than its firmware gives.</summary>
public sealed record VmDeviceChange
{
    public required VmDeviceAction Action { get; init; }
    public required string VmName { get; init; }
    public int? IommuGroup { get; init; }
    /// <summary>The host functions this change is about (the group's endpoints).</summary>
    public IReadOnlyList<PciAddress> Functions { get; init; } = [];
    public IReadOnlyList<VmDeviceEdit> Edits { get; init; } = [];
    /// <summary>The MMIO sizing for the devices the VM holds after the change; null when no sizing applies.</summary>
    public MmioPlan? Mmio { get; init; }
    public bool AppliesMmioFix { get; init; }
    public bool RemovesMmioFix { get; init; }
    public bool IsNoOp => Edits.Count == 0 && !AppliesMmioFix && !RemovesMmioFix;

    /// <summary>One line per edit, and one for the MMIO fix with its reason (the BAR sizes): the -WhatIf text.</summary>
    public IReadOnlyList<string> Lines =>
    [
        .. Edits.Select(e => e.Description),
        .. AppliesMmioFix && Mmio is not null ? [$"set the 64-bit MMIO window of VM '{VmName}': {Mmio.Reason}"] : Array.Empty<string>(),
        .. RemovesMmioFix ? [$"remove the 64-bit MMIO window settings Gallium added to VM '{VmName}' (no device left needs them)"] : Array.Empty<string>(),
    ];
}

/// <summary>Plans Add, Remove and Repair of passthrough devices on libvirt VMs. libvirt is the truth for assignments and
/// the kernel for device state (DESIGN.md "The one idea"); nothing changes here, the runner acts.</summary>
public sealed class VmDevicePlanner(ILibvirt libvirt, DeviceInventory inventory, Func<HostCpu> hostCpu)
{
    public VmDeviceChange PlanAdd(string vmName, PciAddress address)
    {
        var domain = StoppedPersistentDomain(vmName);
        var (device, group) = ReadGroup(address);
        var notEnabled = group.Endpoints.Where(d => d.Driver != "vfio-pci").ToArray();
        if (notEnabled.Length > 0) throw new PciDeviceNotEnabledException(address, group.Id, notEnabled);

        var endpoints = group.Endpoints.Select(d => d.Address).ToArray();
        var index = AssignmentIndex.FromDomains(libvirt.ListDomains());
        var elsewhere = index.ForAnyOf(endpoints).Select(a => a.VmName).Where(v => v != domain.Name).Distinct().ToArray();
        if (elsewhere.Length > 0) throw new PciDeviceAssignedException(address, group.Id, elsewhere);

        var held = DomainXml.ReadPciHostdevs(domain.Xml).Select(h => h.Address).ToHashSet();
        var missing = endpoints.Where(a => !held.Contains(a)).ToArray();
        var edits = new List<VmDeviceEdit>();
        string plannedXml = domain.Xml;
        // One guest slot per host device (a multi-function device stays multi-function); each later slot is chosen
        // against the definition as it will be after the earlier attaches.
        foreach (var slot in missing.GroupBy(a => a.SlotFunction0))
        {
            var plan = DomainXml.PlanAttach(plannedXml, slot);
            int hostdevIndex = 0;
            foreach (string xml in plan.DeviceXml)
            {
                bool controller = xml.StartsWith("<controller", StringComparison.Ordinal);
                var source = controller ? (PciAddress?)null : slot.Order().ElementAt(hostdevIndex++);
                string where = plan.GuestSlot is { } g ? $" in guest slot {g.ToString()[..^2]}" : " (libvirt picks the guest address)";
                edits.Add(controller
                    ? new VmDeviceEdit(null, xml, $"add a pcie-root-port to VM '{vmName}' for {slot.Key} (it has no free one)", IsController: true)
                    : new VmDeviceEdit(source, xml, $"add hostdev {Describe(source!.Value)} to VM '{vmName}'{where} (managed='no')"));
            }
            plannedXml = WithDevices(plannedXml, plan.DeviceXml);
        }

        var mmio = PlanMmio(plannedXml, held.Concat(missing));
        return new VmDeviceChange
        {
            Action = VmDeviceAction.Add, VmName = domain.Name, IommuGroup = group.Id, Functions = endpoints, Edits = edits,
            Mmio = mmio, AppliesMmioFix = mmio?.IsFixNeeded == true && MmioDomainXml.ApplyFix(plannedXml, mmio) != plannedXml,
        };
    }

    public VmDeviceChange PlanRemove(string vmName, PciAddress address)
    {
        var domain = StoppedPersistentDomain(vmName);
        var hostdevs = DomainXml.ReadPciHostdevs(domain.Xml);
        // The whole group leaves together, as it came; a device gone from the host still leaves by its address.
        var device = inventory.Read(address);
        var group = device?.IommuGroup is int id ? inventory.ReadGroup(id) : null;
        var functions = group?.Endpoints.Select(d => d.Address).ToHashSet() ?? [address];
        var leaving = hostdevs.Where(h => functions.Contains(h.Address) || h.Address == address).ToArray();
        if (leaving.Length == 0) throw new PciDeviceNotAssignedException(address, domain.Name);

        var edits = leaving.Select(h => new VmDeviceEdit(h.Address, DomainXml.BuildDetach(domain.Xml, h.Address),
            $"remove hostdev {Describe(h.Address)} from VM '{vmName}'")).ToList();
        var remaining = hostdevs.Select(h => h.Address).Except(leaving.Select(h => h.Address)).ToArray();
        var mmio = PlanMmio(domain.Xml, remaining);
        bool hasOurFix = MmioDomainXml.RemoveFix(domain.Xml) != domain.Xml;
        return new VmDeviceChange
        {
            Action = VmDeviceAction.Remove, VmName = domain.Name, IommuGroup = group?.Id,
            Functions = leaving.Select(h => h.Address).ToArray(), Edits = edits, Mmio = mmio,
            RemovesMmioFix = hasOurFix && mmio?.IsFixNeeded != true,
        };
    }

    /// <summary>The MMIO fix alone, for VMs that already hold large-BAR devices (added by hand or by another tool).</summary>
    public VmDeviceChange PlanRepair(string vmName)
    {
        var domain = libvirt.GetDomain(vmName);
        if (!domain.IsPersistent) throw new VmNotPersistentException(domain.Name);
        var held = DomainXml.ReadPciHostdevs(domain.Xml).Select(h => h.Address).ToArray();
        var mmio = PlanMmio(domain.Xml, held);
        return new VmDeviceChange
        {
            Action = VmDeviceAction.Repair, VmName = domain.Name, Functions = held, Mmio = mmio,
            AppliesMmioFix = mmio?.IsFixNeeded == true && MmioDomainXml.ApplyFix(domain.Xml, mmio) != domain.Xml,
        };
    }

    private LibvirtDomain StoppedPersistentDomain(string vmName)
    {
        var domain = libvirt.GetDomain(vmName);
        if (domain.State != VmState.ShutOff) throw new VmNotStoppedException(domain.Name, domain.State);
        if (!domain.IsPersistent) throw new VmNotPersistentException(domain.Name);
        return domain;
    }

    private (PciDevice Device, IommuGroup Group) ReadGroup(PciAddress address)
    {
        var device = inventory.Read(address) ?? throw new PciDeviceNotFoundException(address);
        if (device.IsBridge)
            throw new GalliumException("PciDeviceIsBridge", ErrorKind.InvalidArgument,
                $"{address} is a bridge; only endpoint functions can be given to a VM (REFERENCE §4.5).", address.ToString());
        if (device.IommuGroup is not int id || inventory.ReadGroup(id) is not { } group)
            throw new GalliumException("PciDeviceNotInIommuGroup", ErrorKind.NotEnabled,
                $"{address} is in no IOMMU group: the IOMMU is off. Run Test-GalliumPciPassthrough.", address.ToString());
        return (device, group);
    }

    // Sizing uses the devices as the host sees them now; a device no longer on the host has no BARs to count.
    private MmioPlan? PlanMmio(string domainXml, IEnumerable<PciAddress> functions)
    {
        var devices = functions.Distinct().Select(inventory.Read).OfType<PciDevice>().ToArray();
        if (devices.Length == 0 || devices.All(d => d.Bar64Size == 0)) return null;
        var plan = MmioPlanner.PlanForDomain(domainXml, hostCpu(), devices);
        plan.ThrowIfRefused();
        return plan;
    }

    private string Describe(PciAddress address) =>
        inventory.Read(address) is { } d ? $"{address} ({d.ClassName}: {d.VendorName} {d.DeviceName})" : address.ToString();

    private static string WithDevices(string domainXml, IEnumerable<string> deviceXml)
    {
        var doc = XDocument.Parse(domainXml);
        var devices = doc.Root!.Element("devices") ?? new XElement("devices");
        if (devices.Parent is null) doc.Root.Add(devices);
        foreach (string xml in deviceXml) devices.Add(XElement.Parse(xml));
        return doc.ToString(SaveOptions.DisableFormatting);
    }
}
