using Gallium.Pci.Host;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;
using Gallium.Pci.Passthrough;

namespace Gallium.Pci.Assignments;

/// <summary>Plans Add, Remove and Repair of passthrough devices on one libvirt VM. libvirt is the truth for assignments and
/// the kernel for device state (DESIGN.md "The one idea"); nothing changes here. The runner calls it again under the host
/// lock, so every check below is made again right before the edit.</summary>
public sealed class VmDevicePlanner(ILibvirt libvirt, DeviceInventory inventory, Func<HostCpu> hostCpu)
{
    public VmDeviceChange Plan(VmDeviceRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        VmNameInvalidException.ThrowIfInvalid(request.VmName);
        var devices = new Dictionary<PciAddress, PciDevice?>();
        PciDevice? Device(PciAddress a) => devices.TryGetValue(a, out var d) ? d : devices[a] = inventory.Read(a);
        return request.Action switch
        {
            VmDeviceAction.Add => PlanAdd(request, Device),
            VmDeviceAction.Remove => PlanRemove(request, Device),
            _ => PlanRepair(request, Device),
        };
    }

    private VmDeviceChange PlanAdd(VmDeviceRequest request, Func<PciAddress, PciDevice?> device)
    {
        var domain = StoppedPersistentDomain(request.VmName);
        string xml = libvirt.GetDefinition(domain.Name);
        var index = AssignmentIndex.FromDomains(libvirt.ListDomains());
        var held = DomainXml.ReadPciHostdevs(xml).Select(h => h.Address).ToHashSet();

        var groups = new List<VmGroupChange>();
        var refusals = new List<GalliumException>();
        foreach (var address in request.Addresses.Distinct())
        {
            if (groups.Any(g => g.Functions.Contains(address))) continue;  // a GPU and its audio function: one group
            try
            {
                var group = ReadGroup(address, device);
                // Enabled: on vfio-pci with its override and records (so it stays there after a reboot), no change half done.
                var notEnabled = group.Endpoints.Where(d => d.Driver != "vfio-pci" || d.PassthroughState != PassthroughState.Enabled).ToArray();
                if (notEnabled.Length > 0) throw new PciDeviceNotEnabledException(address, group.Id, notEnabled);
                var endpoints = group.Endpoints.Select(d => d.Address).ToArray();
                // One device, one VM (libvirt refuses to start two VMs sharing a VFIO group, REFERENCE §4.1).
                var elsewhere = index.ForAnyOf(endpoints).Select(a => a.VmName).Where(v => v != domain.Name)
                    .Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
                if (elsewhere.Length > 0) throw new PciDeviceAssignedException(address, group.Id, elsewhere);
                groups.Add(new VmGroupChange(address, group.Id, endpoints));
            }
            catch (GalliumException e) when (!e.IsHostLevel) { refusals.Add(e); }
        }

        var (edits, missing) = AttachEdits(domain.Name, xml, groups, held, device);
        var after = held.Concat(missing).Distinct().Select(device).OfType<PciDevice>().ToArray();
        var change = new VmDeviceChange
        {
            Request = request, VmName = domain.Name, Groups = groups, Edits = edits, DevicesAfter = after, Refusals = refusals,
        };
        return Sized(change, xml, () => FewerThatFit(request, domain.Name, xml, held, groups, device));
    }

    private VmDeviceChange PlanRemove(VmDeviceRequest request, Func<PciAddress, PciDevice?> device)
    {
        var domain = StoppedPersistentDomain(request.VmName);
        string xml = libvirt.GetDefinition(domain.Name);
        var hostdevs = DomainXml.ReadPciHostdevs(xml);
        var groups = new List<VmGroupChange>();
        var refusals = new List<GalliumException>();
        foreach (var address in request.Addresses.Distinct())
        {
            if (groups.Any(g => g.Functions.Contains(address))) continue;
            // The whole group leaves together, as it came; a device gone from the host still leaves by its address.
            var found = device(address);
            var group = found?.IommuGroup is int id ? inventory.ReadGroup(id) : null;
            var functions = group?.Endpoints.Select(d => d.Address).ToHashSet() ?? [];
            functions.Add(address);
            var leaving = hostdevs.Where(h => functions.Contains(h.Address)).Select(h => h.Address).ToArray();
            if (leaving.Length == 0) refusals.Add(new PciDeviceNotAssignedException(address, domain.Name));
            else groups.Add(new VmGroupChange(address, group?.Id, leaving));
        }

        var leavingAll = groups.SelectMany(g => g.Functions).Distinct().ToArray();
        var edits = DetachEdits(domain.Name, xml, leavingAll, device);
        var after = hostdevs.Select(h => h.Address).Except(leavingAll).Distinct().Select(device).OfType<PciDevice>().ToArray();
        var change = new VmDeviceChange
        {
            Request = request, VmName = domain.Name, Groups = groups, Edits = edits, DevicesAfter = after, Refusals = refusals,
        };
        return groups.Count == 0 ? change : Sized(change, xml, null);
    }

    /// <summary>The MMIO fix alone, for VMs that already hold large-BAR devices (added by hand or by another tool).</summary>
    private VmDeviceChange PlanRepair(VmDeviceRequest request, Func<PciAddress, PciDevice?> device)
    {
        var domain = libvirt.GetDomain(request.VmName);
        if (!domain.IsPersistent) throw new VmNotPersistentException(domain.Name);
        string xml = libvirt.GetDefinition(domain.Name);
        var held = DomainXml.ReadPciHostdevs(xml).Select(h => h.Address).Distinct().ToArray();
        var change = new VmDeviceChange
        {
            Request = request, VmName = domain.Name, DevicesAfter = held.Select(device).OfType<PciDevice>().ToArray(),
        };
        return Sized(change, xml, null);
    }

    /// <summary>The change with its MMIO transition, or refused as a whole (with the devices it left out still listed).</summary>
    private VmDeviceChange Sized(VmDeviceChange change, string xml, Func<int?>? fewerThatFit)
    {
        try { return change with { Mmio = Size(change, xml, fewerThatFit) }; }
        catch (GalliumException refusal) when (!refusal.IsHostLevel) { return change with { Refused = refusal }; }
    }

    /// <summary>The fix for everything the VM holds after the change; a set that cannot fit is refused whole, saying how many
    /// of the devices named would.</summary>
    private MmioTransition Size(VmDeviceChange change, string xml, Func<int?>? fewerThatFit)
    {
        try { return MmioTransition.Compute(xml, change.Project, change.DevicesAfter, hostCpu); }
        catch (GalliumException refusal) when (!refusal.IsHostLevel && fewerThatFit is not null && change.Groups.Count > 1)
        {
            int? fit = fewerThatFit();
            string more = fit is int k and > 0
                ? $" Of the {change.Groups.Count} devices named, the first {k} ({string.Join(", ", change.Groups.Take(k).Select(g => g.Requested))}) would fit."
                : $" Not even one of the {change.Groups.Count} devices named fits beside what the VM holds.";
            throw new GalliumException(refusal.ErrorId, refusal.Kind, refusal.Message + more + " Nothing was changed.", refusal.Target, refusal)
            {
                RecommendedAction = (refusal.RecommendedAction is { } a ? a + " " : "") + more.Trim(),
            };
        }
    }

    /// <summary>How many of the named groups, in the order given, fit with what the VM holds; null when the sizing itself fails.</summary>
    private int? FewerThatFit(VmDeviceRequest request, string vmName, string xml, HashSet<PciAddress> held, List<VmGroupChange> groups,
        Func<PciAddress, PciDevice?> device)
    {
        for (int k = groups.Count - 1; k >= 0; k--)
        {
            var (edits, missing) = AttachEdits(vmName, xml, groups.Take(k).ToList(), held, device);
            var trial = new VmDeviceChange
            {
                Request = request, VmName = vmName, Edits = edits,
                DevicesAfter = held.Concat(missing).Distinct().Select(device).OfType<PciDevice>().ToArray(),
            };
            try
            {
                MmioTransition.Compute(xml, trial.Project, trial.DevicesAfter, hostCpu);
                return k;
            }
            catch (GalliumException e) when (!e.IsHostLevel) { }
        }
        return null;
    }

    /// <summary>Root ports and hostdevs for the groups' functions the VM does not hold yet: one guest slot per host device (a
    /// multi-function device stays multi-function), each slot chosen against the definition as the earlier attaches leave it.</summary>
    private (List<VmDeviceEdit> Edits, List<PciAddress> Missing) AttachEdits(string vmName, string xml, IReadOnlyList<VmGroupChange> groups,
        HashSet<PciAddress> held, Func<PciAddress, PciDevice?> device)
    {
        var missing = groups.SelectMany(g => g.Functions).Where(a => !held.Contains(a)).Distinct().ToList();
        var edits = new List<VmDeviceEdit>();
        string planned = xml;
        foreach (var slot in missing.GroupBy(a => a.SlotFunction0))
        {
            var plan = DomainXml.PlanAttach(planned, slot);
            var sources = slot.Order().ToList();
            int next = 0;
            string where = plan.GuestSlot is { } g ? $" in guest slot {g.ToString()[..^2]}" : " (libvirt picks the guest address)";
            foreach (string attach in plan.DeviceXml)
            {
                if (attach.StartsWith("<controller", StringComparison.Ordinal))
                {
                    edits.Add(new VmDeviceEdit(VmEditKind.AttachController, null, attach,
                        $"add a pcie-root-port to VM '{vmName}' for {slot.Key} (it has no free one)"));
                    continue;
                }
                var source = sources[next++];
                edits.Add(new VmDeviceEdit(VmEditKind.AttachHostdev, source, attach,
                    $"add hostdev {Describe(source, device)} to VM '{vmName}'{where} (managed='no')"));
            }
            planned = DomainXml.Project(planned, plan.DeviceXml, []);
        }
        return (edits, missing);
    }

    /// <summary>The device edits of a planned change made again against the definition as it is now (guest slots chosen
    /// against what is there now, hostdevs already gone not detached again): what the single define of an MMIO change holds.</summary>
    public IReadOnlyList<VmDeviceEdit> EditsFor(VmDeviceChange change, string currentXml)
    {
        ArgumentNullException.ThrowIfNull(change);
        var devices = new Dictionary<PciAddress, PciDevice?>();
        PciDevice? Device(PciAddress a) => devices.TryGetValue(a, out var d) ? d : devices[a] = inventory.Read(a);
        var held = DomainXml.ReadPciHostdevs(currentXml).Select(h => h.Address).ToHashSet();
        return change.Action switch
        {
            VmDeviceAction.Add => AttachEdits(change.VmName, currentXml, change.Groups, held, Device).Edits,
            VmDeviceAction.Remove => DetachEdits(change.VmName, currentXml, change.Functions.Where(held.Contains).ToArray(), Device),
            _ => [],
        };
    }

    /// <summary>The hostdevs leaving, as the definition holds them, then the root ports Gallium added that nothing uses after.</summary>
    private static List<VmDeviceEdit> DetachEdits(string vmName, string xml, IReadOnlyList<PciAddress> leaving, Func<PciAddress, PciDevice?> device)
    {
        var edits = leaving.Select(a => new VmDeviceEdit(VmEditKind.DetachHostdev, a, DomainXml.BuildDetach(xml, a),
            $"remove hostdev {Describe(a, device)} from VM '{vmName}'")).ToList();
        edits.AddRange(DomainXml.UnusedGalliumRootPorts(xml, leaving).Select(c => new VmDeviceEdit(VmEditKind.DetachController, null, c,
            $"remove the pcie-root-port Gallium added to VM '{vmName}' (nothing uses it any more)")));
        return edits;
    }

    private LibvirtDomain StoppedPersistentDomain(string vmName)
    {
        var domain = libvirt.GetDomain(vmName);
        if (domain.State != VmState.ShutOff) throw new VmNotStoppedException(domain.Name, domain.State);
        if (!domain.IsPersistent) throw new VmNotPersistentException(domain.Name);
        return domain;
    }

    private IommuGroup ReadGroup(PciAddress address, Func<PciAddress, PciDevice?> device)
    {
        var found = device(address) ?? throw new PciDeviceNotFoundException(address);
        if (found.IsBridge) throw new PciDeviceIsBridgeException(address, found.Driver);
        if (found.IommuGroup is not int id || inventory.ReadGroup(id, [found]) is not { } group)
            throw new PciDeviceNotInIommuGroupException(address);
        return group;
    }

    private static string Describe(PciAddress address, Func<PciAddress, PciDevice?> device) =>
        device(address) is { } d ? $"{address} ({d.ClassName}: {d.VendorName} {d.DeviceName})" : address.ToString();
}
