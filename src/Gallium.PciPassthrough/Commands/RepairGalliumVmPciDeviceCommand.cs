using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Assignments;
using Gallium.PciPassthrough.Completers;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Applies the large-BAR 64-bit MMIO window fix to VMs that already hold passthrough devices (added by hand or
/// by another tool): GPUs with more than 32 GB of VRAM attach but fail to initialise without it.</summary>
[Cmdlet(VerbsDiagnostic.Repair, "GalliumVmPciDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
    HelpUri = HelpLinks.RepairGalliumVmPciDevice)]
[OutputType(typeof(VmPciAssignment))]
public sealed class RepairGalliumVmPciDeviceCommand : LibvirtCmdlet
{
    /// <summary>The VMs to repair (wildcards); every VM that holds a PCI device when omitted.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string[]? VmName { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private readonly HashSet<string> _done = new(StringComparer.Ordinal);

    protected override void BeginProcessing() => RequireLocalLibvirt();

    protected override void ProcessRecord()
    {
        ILibvirt libvirt;
        try { libvirt = OpenLibvirt(); }
        catch (GalliumException e) { ThrowTerminatingError(e); return; }
        using (libvirt)
        {
            var domains = libvirt.ListDomains();
            var names = VmName is null
                ? domains.Where(d => DomainXml.ReadPciHostdevs(d.Xml).Count > 0).Select(d => d.Name)
                : VmName.SelectMany(n => Match(n, domains));
            foreach (string name in names)
            {
                if (!_done.Add(name)) continue;
                try { Repair(libvirt, name); }
                catch (GalliumException e) when (e.IsHostLevel) { ThrowTerminatingError(e); }
                catch (GalliumException e) { WriteError(e); }
            }
        }
    }

    private IEnumerable<string> Match(string name, IReadOnlyList<LibvirtDomain> domains)
    {
        if (!WildcardPattern.ContainsWildcardCharacters(name))
        {
            if (domains.Any(d => d.Name == name)) return [name];
            WriteError(new VmNotFoundException(name, null));
            return [];
        }
        var pattern = WildcardPattern.Get(name, WildcardOptions.None);
        return domains.Where(d => pattern.IsMatch(d.Name)).Select(d => d.Name);
    }

    private void Repair(ILibvirt libvirt, string name)
    {
        var change = new VmDevicePlanner(libvirt, NewInventory(), RequireHostCpu).PlanRepair(name);
        if (change.IsNoOp)
            WriteVerbose(change.Mmio is null
                ? $"VM '{name}' holds no device with a 64-bit prefetchable BAR: nothing to size."
                : $"No change needed: {change.Mmio.Reason}");
        else if (VmShouldProcess.Ask(this, change, "Repair VM"))
        {
            new VmDeviceRunner(libvirt).Run(change, WriteVerbose);
            if (change.Action == VmDeviceAction.Repair) WriteVerbose($"VM '{name}': the window takes effect the next time it starts.");
        }
        if (PassThru)
            WriteObject(AssignmentView.ReadAssignments([libvirt.GetDomain(name)], NewInventory(), ReadHostCpu), enumerateCollection: true);
    }
}
