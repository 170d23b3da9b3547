using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Assignments;
using Gallium.PciPassthrough.Completers;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Adds a device enabled for passthrough (with every endpoint of its IOMMU group) to a stopped VM's definition, and
/// sizes the VM's 64-bit MMIO window when its devices need more than the firmware gives (large-VRAM GPUs).</summary>
[Cmdlet(VerbsCommon.Add, "GalliumVmPciDevice", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium,
    DefaultParameterSetName = AddressSet, HelpUri = HelpLinks.AddGalliumVmPciDevice)]
[OutputType(typeof(VmPciAssignment))]
public sealed class AddGalliumVmPciDeviceCommand : LibvirtCmdlet
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

    /// <summary>Write the VM's assignments of the added group.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    private ILibvirt? _libvirt;
    private readonly HashSet<(string, int?)> _done = [];

    protected override void BeginProcessing() => RequireLocalLibvirt();

    protected override void ProcessRecord()
    {
        var addresses = ParameterSetName == DeviceSet ? InputObject.Select(d => d.Address) : ParseAddresses(Address);
        foreach (var address in addresses)
        {
            try { Add(address); }
            catch (GalliumException e) when (e.IsHostLevel) { ThrowTerminatingError(e); }
            catch (GalliumException e) { WriteError(e); }
        }
    }

    private void Add(PciAddress address)
    {
        _libvirt ??= OpenLibvirt();
        var planner = new VmDevicePlanner(_libvirt, NewInventory(), RequireHostCpu);
        var change = planner.PlanAdd(VmName, address);
        if (!_done.Add((change.VmName, change.IommuGroup))) return; // a GPU and its audio function piped together: one group
        if (change.IsNoOp)
        {
            WriteVerbose($"VM '{change.VmName}' already holds every function of IOMMU group {change.IommuGroup}. Nothing to do.");
        }
        else
        {
            if (!VmShouldProcess.Ask(this, change, "Add PCI device to VM")) return;
            new VmDeviceRunner(_libvirt).Run(change, WriteVerbose);
        }
        if (PassThru)
        {
            var held = AssignmentView.ReadAssignments([_libvirt.GetDomain(change.VmName)], NewInventory(), ReadHostCpu);
            WriteObject(held.Where(a => change.Functions.Contains(a.Address)), enumerateCollection: true);
        }
    }

    protected override void EndProcessing() => _libvirt?.Dispose();
    protected override void StopProcessing() => _libvirt?.Dispose();
}

/// <summary>-WhatIf: one line per hostdev (and per MMIO setting, with the BAR sizes that call for it); -Confirm: one
/// prompt per VM change, listing them.</summary>
internal static class VmShouldProcess
{
    public static bool Ask(PSCmdlet cmdlet, VmDeviceChange change, string action)
    {
        var lines = change.Lines;
        string warning = $"{action} '{change.VmName}'?{Environment.NewLine}" + string.Join(Environment.NewLine, lines.Select(l => "  " + l));
        if (cmdlet.ShouldProcess($"{action}: {lines[0]}", warning, action, out ShouldProcessReason reason)) return true;
        if (reason == ShouldProcessReason.WhatIf)
            foreach (string line in lines.Skip(1)) cmdlet.ShouldProcess($"{action}: {line}", warning, action);
        return false;
    }
}
