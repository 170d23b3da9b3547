using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Passthrough;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Detaches a device's whole IOMMU group from its host drivers and binds every endpoint to vfio-pci, persistently.</summary>
[Cmdlet(VerbsLifecycle.Enable, "GalliumPciPassthrough", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
    DefaultParameterSetName = DeviceSet, HelpUri = HelpLinks.EnableGalliumPciPassthrough)]   // a piped device binds as itself (checked against this host), never by its address text
[OutputType(typeof(PciDevice))]
public sealed class EnableGalliumPciPassthroughCommand : PassthroughCommandBase
{
    /// <summary>Take the group even when it holds a device the host depends on (its root disk, its default-route NIC, the
    /// boot console). Not implied by -Force or -Confirm:$false.</summary>
    [Parameter]
    public SwitchParameter AllowHostCritical { get; set; }

    protected override string Action => "Enable PCI passthrough";

    protected override PassthroughPlan Plan(PassthroughPlanner planner, PciAddress address) =>
        planner.PlanEnable(address, AllowHostCritical);

    protected override string NoOpMessage(PassthroughPlan plan) =>
        $"IOMMU group {plan.IommuGroup.Id} is already enabled for passthrough: every endpoint is on vfio-pci. Nothing to do.";
}
