using Gallium.Pci.Host;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;

namespace Gallium.Pci.Assignments;

/// <summary>Joins the two truths (DESIGN.md): devices from the kernel, assignments from libvirt's VM definitions.</summary>
public static class AssignmentView
{
    /// <summary>Devices referenced by any VM definition name the VMs, and become <see cref="PassthroughState.Assigned"/> —
    /// except drift (NotPersisted, Drifted, Interrupted), which keeps its state so a VM's device on the wrong driver is
    /// never shown as assigned and fine.</summary>
    public static IReadOnlyList<PciDevice> Annotate(IReadOnlyList<PciDevice> devices, AssignmentIndex index) =>
        devices.Select(d => index.IsAssigned(d.Address)
            ? d with
            {
                AssignedTo = index.VmNamesFor(d.Address),
                PassthroughState = d.PassthroughState is PassthroughState.Enabled or PassthroughState.Host or PassthroughState.Unbound
                    ? PassthroughState.Assigned : d.PassthroughState,
            }
            : d).ToArray();

    /// <summary>Every assignment from one listing of all domains, each with its VM's 64-bit MMIO window: what the firmware
    /// gives and what the VM's devices need. Each referenced function is read from sysfs once, however many VMs hold it, and
    /// the host CPU once (a 1,000-VM host would otherwise parse /proc/cpuinfo a thousand times).</summary>
    /// <param name="host">The host whose libvirt the domains come from (this one, for a local URI); null when unknown.</param>
    public static IReadOnlyList<VmPciAssignment> ReadAssignments(IReadOnlyList<LibvirtDomain> domains, DeviceInventory inventory, Func<HostCpu?> hostCpu,
        HostId? host = null)
    {
        var devices = new Dictionary<PciAddress, PciDevice?>();
        PciDevice? Device(PciAddress address)
        {
            if (!devices.TryGetValue(address, out var device)) devices[address] = device = inventory.Read(address);
            return device;
        }
        var cpu = new Lazy<HostCpu?>(hostCpu, LazyThreadSafetyMode.None);

        var result = new List<VmPciAssignment>();
        foreach (var domain in domains)
        {
            var assignments = DomainXml.ReadAssignments(domain).Select(a => a with { Host = host }).ToList();
            if (assignments.Count == 0) continue;
            var window = Window(domain, assignments, Device, cpu);
            result.AddRange(window is null ? assignments : assignments.Select(a => a with
            {
                MmioWindowSize = window.CurrentWindow?.UsableBytes,
                MmioNeededSize = window.NeededBytes,
                MmioFixNeeded = window.IsFixNeeded || window.Outcome == MmioPlanOutcome.Refused,
            }));
        }
        return result;
    }

    private static MmioPlan? Window(LibvirtDomain domain, IReadOnlyList<VmPciAssignment> assignments, Func<PciAddress, PciDevice?> device, Lazy<HostCpu?> hostCpu)
    {
        var devices = assignments.Select(a => a.Address).Distinct().Select(device).OfType<PciDevice>().ToArray();
        if (devices.All(d => d.Bar64Size == 0) || hostCpu.Value is not { } cpu) return null;
        try { return MmioPlanner.PlanForDomain(domain.Xml, cpu, devices); }
        catch (GalliumException) { return null; } // a definition the sizing cannot read still lists its assignments
    }
}
