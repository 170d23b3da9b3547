using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Assignments;
using Gallium.PciPassthrough.Completers;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Removes a device (every function of its IOMMU group) from a stopped VM's definition; the device stays enabled
/// for passthrough and is free for another VM. Asks for confirmation.</summary>
[Cmdlet(VerbsCommon.Remove, "GalliumVmPciDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High,
    HelpUri = HelpLinks.RemoveGalliumVmPciDevice)]
[OutputType(typeof(PciDevice))]
public sealed class RemoveGalliumVmPciDeviceCommand : LibvirtCmdlet
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

    private ILibvirt? _libvirt;
    private readonly HashSet<(string, PciAddress)> _decided = [];

    protected override void BeginProcessing() => RequireLocalLibvirt();

    protected override void ProcessRecord()
    {
        foreach (var address in ParseAddresses(Address))
        {
            // Piping a VM's assignments lists a GPU and its audio function: the group is decided (removed, declined or
            // reported by -WhatIf) once, on its first row.
            if (_decided.Contains((VmName, address))) { WriteVerbose($"{address} was decided with its IOMMU group."); continue; }
            try { Remove(address); }
            catch (GalliumException e) when (e.IsHostLevel) { ThrowTerminatingError(e); }
            catch (GalliumException e) { WriteError(e); }
        }
    }

    private void Remove(PciAddress address)
    {
        _libvirt ??= OpenLibvirt();
        var change = new VmDevicePlanner(_libvirt, NewInventory(), RequireHostCpu).PlanRemove(VmName, address);
        foreach (var f in change.Functions) _decided.Add((VmName, f));
        if (!Confirmed(change)) return;
        new VmDeviceRunner(_libvirt).Run(change, WriteVerbose);
        if (PassThru)
        {
            var inventory = NewInventory();
            WriteObject(change.Functions.Select(inventory.Read).OfType<PciDevice>(), enumerateCollection: true);
        }
    }

    // ConfirmImpact High: ShouldProcess asks by default; -Force answers for the user but -WhatIf still only reports.
    private bool Confirmed(VmDeviceChange change)
    {
        bool whatIf = MyInvocation.BoundParameters.TryGetValue("WhatIf", out var w) && ((SwitchParameter)w).IsPresent
            || SessionState.PSVariable.GetValue("WhatIfPreference") is bool b && b
            || SessionState.PSVariable.GetValue("WhatIfPreference") is SwitchParameter s && s.IsPresent;
        if (Force && !whatIf) return true;
        return VmShouldProcess.Ask(this, change, "Remove PCI device from VM");
    }

    protected override void EndProcessing() => _libvirt?.Dispose();
    protected override void StopProcessing() => _libvirt?.Dispose();
}
