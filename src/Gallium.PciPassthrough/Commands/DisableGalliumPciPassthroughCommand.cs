using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Assignments;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Passthrough;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Returns a device's whole IOMMU group from vfio-pci to the drivers the kernel picks; refused while any VM
/// (running or stopped) references a member of the group.</summary>
[Cmdlet(VerbsLifecycle.Disable, "GalliumPciPassthrough", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
    DefaultParameterSetName = DeviceSet, HelpUri = HelpLinks.DisableGalliumPciPassthrough)]   // a piped device binds as itself (checked against this host), never by its address text
[OutputType(typeof(PciDevice))]
public sealed class DisableGalliumPciPassthroughCommand : PassthroughCommandBase
{
    /// <summary>The system libvirt to ask whether a VM holds the group: qemu:///system (a simulated host's own test driver), the default whatever
    /// LIBVIRT_DEFAULT_URI says; another URI is accepted only when it reaches that same daemon (e.g. with ?socket=).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Uri { get; set; }

    protected override string Action => "Disable PCI passthrough";

    private string? _systemUri;

    // "Does anything on this host hold the group" is a question for the system daemon: a session daemon, the test driver or
    // another host would answer "no" for VMs they cannot see, and the group would go back to the host under a running VM.
    // A simulated host's system daemon is its own test driver (HostContext.Libvirt.SystemUri).
    protected override void BeginProcessing()
    {
        CheckUri();                // refused before anything, the repair of an unfinished change included, is done
        base.BeginProcessing();
    }

    private void CheckUri()
    {
        string system = HostContext.Libvirt.SystemUri;
        if (Uri is null) { _systemUri = system; return; }   // LIBVIRT_DEFAULT_URI is deliberately not consulted
        string uri = Uri.Trim();
        try { LibvirtUri.Validate(uri); }
        catch (LibvirtUriInvalidException e) { ThrowTerminatingError(e); }
        if (LibvirtUri.IsSystem(uri) || string.Equals(uri, system, StringComparison.Ordinal)) { _systemUri = uri; return; }
        if (!LibvirtUri.IsLocal(uri))
            ThrowTerminatingError(new GalliumException("LibvirtUriNotLocal", ErrorKind.InvalidArgument,
                $"'{uri}' is another host's libvirt; Disable must ask the libvirt of the host whose devices it changes.", uri)
            { RecommendedAction = "Run it on that host: Invoke-Command -HostName <host> { Disable-GalliumPciPassthrough ... }" });
        ThrowTerminatingError(new GalliumException("LibvirtUriNotSystem", ErrorKind.InvalidArgument,
            $"'{uri}' is not this host's system libvirt. Disable asks {system} whether any VM holds the group, because only it holds the VMs that can use host devices.", uri)
        { RecommendedAction = $"Leave -Uri out (Disable always asks {system}), or give a {system} URI." });
    }

    protected override IAssignmentLookup Assignments => new LibvirtAssignmentLookup(() =>
        StoppableLibvirt.Open(() => HostContext.Libvirt.Open(_systemUri ?? HostContext.Libvirt.SystemUri, readOnly: true), StopToken));

    protected override PassthroughPlan Plan(PassthroughPlanner planner, PciAddress address) => planner.PlanDisable(address);

    protected override string NoOpMessage(PassthroughPlan plan) =>
        $"IOMMU group {plan.IommuGroup.Id} is not enabled for passthrough: no member is on vfio-pci. Nothing to do.";
}
