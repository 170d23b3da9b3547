using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Assignments;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Passthrough;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Returns a device's whole IOMMU group from vfio-pci to the drivers the kernel picks; refused while any VM
/// (running or stopped) references a member of the group.</summary>
[Cmdlet(VerbsLifecycle.Disable, "GalliumPciPassthrough", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
    HelpUri = HelpLinks.DisableGalliumPciPassthrough)]
[OutputType(typeof(PciDevice))]
public sealed class DisableGalliumPciPassthroughCommand : PassthroughCommandBase
{
    /// <summary>The libvirt connection whose VM definitions are checked (default LIBVIRT_DEFAULT_URI, else qemu:///system).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Uri { get; set; }

    protected override string Action => "Disable PCI passthrough";

    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        string uri = ResolveLibvirtUri(Uri);
        if (!LibvirtUri.IsLocal(uri))
            ThrowTerminatingError(new GalliumException("LibvirtUriNotLocal", ErrorKind.InvalidArgument,
                $"'{uri}' is another host's libvirt; Disable must ask the libvirt of the host whose devices it changes.", uri)
            { RecommendedAction = "Run it on that host: Invoke-Command -HostName <host> { Disable-GalliumPciPassthrough ... }" });
    }

    protected override IAssignmentLookup Assignments => new LibvirtAssignmentLookup(() => HostContext.Libvirt.Open(Uri, readOnly: true));

    protected override PassthroughPlan Plan(PassthroughPlanner planner, PciAddress address) => planner.PlanDisable(address);

    protected override string NoOpMessage(PassthroughPlan plan) =>
        $"IOMMU group {plan.IommuGroup.Id} is not enabled for passthrough: no member is on vfio-pci. Nothing to do.";
}
