using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Assignments;
using Gallium.Pci.Libvirt;
using Gallium.PciPassthrough.Completers;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Makes the large-BAR 64-bit MMIO window fix of VMs right for the devices they hold (added by hand or by another
/// tool): applies it where it is missing, shrinks or removes Gallium's where it is larger than needed. Idempotent.</summary>
[Cmdlet(VerbsDiagnostic.Repair, "GalliumVmPciDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
    HelpUri = HelpLinks.RepairGalliumVmPciDevice)]
[OutputType(typeof(VmPciAssignment))]
public sealed class RepairGalliumVmPciDeviceCommand : VmChangeCommandBase
{
    /// <summary>The VMs to repair (wildcards); every VM that holds a PCI device, or carries Gallium's fix, when omitted.</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string[]? VmName { get; set; }

    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override string Action => "Repair VM";

    private readonly HashSet<string> _done = new(StringComparer.Ordinal);

    protected override void BeginProcessing() => RequireLocalLibvirt();

    protected override void ProcessRecord()
    {
        IReadOnlyList<LibvirtDomain> domains;
        try { domains = Libvirt.ListDomains(); }
        catch (GalliumException e) { ThrowTerminatingError(e); return; }
        var names = VmName is null
            ? domains.Where(d => d.IsPersistent && (DomainXml.ReadPciHostdevs(d.Xml).Count > 0 || Pci.Mmio.MmioDomainXml.HasFix(d.Xml))).Select(d => d.Name)
            : VmName.Where(ValidVmName).SelectMany(n => Match(n, domains));
        ForEachVm(names.Where(_done.Add).ToList(), Repair);
    }

    private IEnumerable<string> Match(string name, IReadOnlyList<LibvirtDomain> domains)
    {
        if (!WildcardPattern.ContainsWildcardCharacters(name))
        {
            if (domains.Any(d => d.Name == name)) return [name];
            WriteError(new VmNotFoundException(name, null));
            return [];
        }
        var pattern = Patterns.Compile(nameof(VmName), name, WriteError, WildcardOptions.None);
        return pattern is null ? [] : domains.Where(d => pattern.IsMatch(d.Name)).Select(d => d.Name);
    }

    private void Repair(string name)
    {
        var done = Change(VmDeviceRequest.Repair(name), c => VmShouldProcess.Ask(this, c, Action));
        if (done is { IsNoOp: false }) WriteVerbose($"VM '{name}': the window takes effect the next time it starts.");
        if (PassThru && done is not null)
        {
            var inventory = NewInventory();
            WriteObject(AssignmentView.ReadAssignments([Libvirt.GetDomain(name)], inventory, ReadHostCpu, inventory.Host), enumerateCollection: true);
        }
    }

    protected override string NoOpMessage(VmDeviceChange change) => change.Mmio?.Plan is null
        ? $"VM '{change.VmName}' holds no device with a 64-bit prefetchable BAR, and carries no Gallium fix: nothing to size."
        : $"No change needed: {change.Mmio.Plan.Reason}";
}
