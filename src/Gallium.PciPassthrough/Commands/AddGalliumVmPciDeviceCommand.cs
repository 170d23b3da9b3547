using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Assignments;
using Gallium.Pci.Host;
using Gallium.Pci.Passthrough;
using Gallium.PciPassthrough.Completers;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Adds a device enabled for passthrough (with every endpoint of its IOMMU group) to a stopped VM's definition, and
/// sizes the VM's 64-bit MMIO window when its devices need more than the firmware gives (large-VRAM GPUs). Every device the
/// command names for one VM is planned together: one MMIO window for all of them, refused as a whole when it cannot fit.</summary>
// Devices are the default set: a piped device (live, imported, or received from another session) binds as the device it
// is and is checked against this host; strings and CSV rows cannot become one and bind -Address.
[Cmdlet(VerbsCommon.Add, "GalliumVmPciDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
    DefaultParameterSetName = DeviceSet, HelpUri = HelpLinks.AddGalliumVmPciDevice)]
[OutputType(typeof(VmPciAssignment))]
public sealed class AddGalliumVmPciDeviceCommand : VmChangeCommandBase
{
    private const string AddressSet = "Address";
    private const string DeviceSet = "InputObject";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string VmName { get; set; } = "";

    [Parameter(ParameterSetName = AddressSet, Mandatory = true, Position = 1, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(EnabledPciAddressCompleter))]
    public string[] Address { get; set; } = [];

    [Parameter(ParameterSetName = DeviceSet, Mandatory = true, ValueFromPipeline = true)]
    [ValidateNotNullOrEmpty]
    public PciDevice[] InputObject { get; set; } = [];

    /// <summary>The host the addresses were read on: a device from another session (remoting, a job) binds its Host here, so
    /// one read on another host is refused instead of naming this host's slot.</summary>
    [Parameter(ParameterSetName = AddressSet, ValueFromPipelineByPropertyName = true)]
    [Alias("Host")]
    public PSObject? SourceHost { get; set; }

    /// <summary>Write the VM's assignments of the added groups.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override string Action => "Add PCI device to VM";

    private DeviceInventory? _inventory;

    protected override void BeginProcessing() => RequireLocalLibvirt();

    protected override void ProcessRecord()
    {
        var addresses = new List<PciAddress>();
        if (ParameterSetName == DeviceSet)
        {
            _inventory ??= NewInventory();
            foreach (var device in InputObject)
            {
                // An object names a device on a host; only this host's may be changed here.
                try { DeviceOrigin.Check(device, _inventory); Admit(device.Address); }
                catch (GalliumException e) when (!e.IsHostLevel) { WriteError(e); }
            }
        }
        else
        {
            foreach (var address in ParseAddresses(Address))
            {
                try { DeviceOrigin.Check(address, PciPassthrough.SourceHost.From(SourceHost), _inventory ??= NewInventory()); Admit(address); }
                catch (GalliumException e) when (!e.IsHostLevel) { WriteError(e); }
            }
        }
        Gather(VmName, addresses);

        void Admit(PciAddress address)
        {
            // Issue 13: a device persisted for vfio-pci but found on a host driver is refused with the repair, before libvirt.
            BindingDrift.ThrowIfDrifted(_inventory!, address);
            addresses.Add(address);
        }
    }

    protected override void EndProcessing()
    {
        try
        {
            ForEachVm(Requests, r =>
            {
                var done = Change(new VmDeviceRequest(VmDeviceAction.Add, r.VmName, r.Addresses), c =>
                {
                    // One warning per caveat of the groups added (and per function on the wrong NUMA node), before -WhatIf/-Confirm (issue 14).
                    WriteCaveats(new VmDeviceCaveats(Libvirt, NewInventory(), HostContext).ForAdd(c.VmName, c.Functions));
                    return VmShouldProcess.Ask(this, c, Action);
                });
                if (!PassThru || done is null) return;
                var functions = done.Functions.ToHashSet();
                var inventory = NewInventory();
                var held = AssignmentView.ReadAssignments([Libvirt.GetDomain(done.VmName)], inventory, ReadHostCpu, inventory.Host);
                WriteObject(held.Where(a => functions.Contains(a.Address)), enumerateCollection: true);
            });
        }
        finally { base.EndProcessing(); }
    }

    protected override string NoOpMessage(VmDeviceChange change) => change.Groups.Count == 0
        ? $"VM '{change.VmName}': no device to add."
        : $"VM '{change.VmName}' already holds every function of IOMMU group(s) {string.Join(", ", change.Groups.Select(g => g.IommuGroup))}. Nothing to do.";
}
