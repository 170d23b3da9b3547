using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Assignments;
using Gallium.PciPassthrough.Completers;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Removes a device (every function of its IOMMU group) from a stopped VM's definition; the device stays enabled
/// for passthrough and is free for another VM. The MMIO fix stays while a device the VM keeps needs it, and shrinks where a
/// smaller window does. Asks for confirmation, once per VM.</summary>
[Cmdlet(VerbsCommon.Remove, "GalliumVmPciDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High,
    HelpUri = HelpLinks.RemoveGalliumVmPciDevice)]
[OutputType(typeof(PciDevice))]
public sealed class RemoveGalliumVmPciDeviceCommand : VmChangeCommandBase
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string VmName { get; set; } = "";

    // By property name only: a piped assignment must bind its Address, never be coerced whole into a string.
    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(PciAddressCompleter))]
    public string[] Address { get; set; } = [];

    /// <summary>Do not ask for confirmation. Never skips -WhatIf.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Write the removed devices, re-read (now Enabled and free for another VM).</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override string Action => "Remove PCI device from VM";

    protected override void BeginProcessing() => RequireLocalLibvirt();

    // Piping a VM's assignments lists a GPU and its audio function: gathered per VM, the group is decided once.
    protected override void ProcessRecord() => Gather(VmName, ParseAddresses(Address));

    protected override void EndProcessing()
    {
        try
        {
            ForEachVm(Requests, r =>
            {
                var done = Change(new VmDeviceRequest(VmDeviceAction.Remove, r.VmName, r.Addresses), Confirmed);
                if (!PassThru || done is null || done.IsNoOp) return;
                var inventory = NewInventory();
                WriteObject(done.Functions.Select(inventory.Read).OfType<PciDevice>(), enumerateCollection: true);
            });
        }
        finally { base.EndProcessing(); }
    }

    // ConfirmImpact High: ShouldProcess asks by default; -Force answers for the user but -WhatIf still only reports.
    private bool Confirmed(VmDeviceChange change)
    {
        bool whatIf = MyInvocation.BoundParameters.TryGetValue("WhatIf", out var w) && ((SwitchParameter)w).IsPresent
            || SessionState.PSVariable.GetValue("WhatIfPreference") is bool b && b
            || SessionState.PSVariable.GetValue("WhatIfPreference") is SwitchParameter s && s.IsPresent;
        if (Force && !whatIf) return true;
        return VmShouldProcess.Ask(this, change, Action);
    }
}
