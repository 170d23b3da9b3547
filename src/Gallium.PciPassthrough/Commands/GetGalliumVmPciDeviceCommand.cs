using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Assignments;
using Gallium.PciPassthrough.Completers;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Lists which VM definitions hold which host PCI functions (libvirt's &lt;hostdev&gt; elements), with each VM's
/// 64-bit MMIO window: what its firmware gives and what its devices need.</summary>
[Cmdlet(VerbsCommon.Get, "GalliumVmPciDevice", DefaultParameterSetName = VmSet, HelpUri = HelpLinks.GetGalliumVmPciDevice)]
[OutputType(typeof(VmPciAssignment))]
public sealed class GetGalliumVmPciDeviceCommand : LibvirtCmdlet
{
    private const string VmSet = "VmName";
    private const string DeviceSet = "InputObject";
    private const string AddressSet = "Address";

    [Parameter(ParameterSetName = VmSet, Position = 0, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(VmNameCompleter))]
    public string[]? VmName { get; set; }

    /// <summary>Host addresses: the assignments that reference them. Binds by property name, so devices deserialized from a
    /// remote session (whose Address is text) pipe in too.</summary>
    [Parameter(ParameterSetName = AddressSet, Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(PciAddressCompleter))]
    public string[]? Address { get; set; }

    /// <summary>Devices (from Get-GalliumPciDevice): the assignments that reference them.</summary>
    [Parameter(ParameterSetName = DeviceSet, Mandatory = true, ValueFromPipeline = true)]
    public PciDevice[]? InputObject { get; set; }

    private IReadOnlyList<VmPciAssignment>? _assignments;
    private HashSet<string>? _vmNames;

    protected override void ProcessRecord()
    {
        try { _assignments ??= Read(); }
        catch (GalliumException e) { ThrowTerminatingError(e); }

        if (ParameterSetName == AddressSet)
        {
            foreach (var address in ParseAddresses(Address ?? []))
                WriteObject(_assignments!.Where(a => a.Address == address), enumerateCollection: true);
            return;
        }
        if (ParameterSetName == DeviceSet)
        {
            foreach (var device in InputObject ?? [])
                WriteObject(_assignments!.Where(a => a.Address == device.Address), enumerateCollection: true);
            return;
        }
        if (VmName is null) { WriteObject(_assignments!, enumerateCollection: true); return; }
        foreach (string name in VmName)
        {
            if (!ValidVmName(name)) continue;
            if (!WildcardPattern.ContainsWildcardCharacters(name) && !_vmNames!.Contains(name))
            {
                WriteError(new VmNotFoundException(name, null));
                continue;
            }
            var pattern = Patterns.Compile(nameof(VmName), name, WriteError, WildcardOptions.None);
            if (pattern is null) continue;
            var matches = _assignments!.Where(a => pattern.IsMatch(a.VmName)).ToArray();
            WriteObject(matches, enumerateCollection: true);
        }
    }

    private IReadOnlyList<VmPciAssignment> Read()
    {
        using var libvirt = OpenLibvirt(readOnly: true);
        var domains = libvirt.ListDomains();
        WriteVerbose($"libvirt: {domains.Count} domain(s) listed in one pass");
        _vmNames = domains.Select(d => d.Name).ToHashSet(StringComparer.Ordinal);
        // Another host's VMs are listed as they are; their MMIO windows need that host's BARs, so they are left empty.
        bool local = LibvirtUri.IsLocal(libvirt.Uri);
        var inventory = NewInventory();
        var assignments = AssignmentView.ReadAssignments(domains, inventory, local ? ReadHostCpu : () => null, local ? inventory.Host : null);
        return local ? VmDeviceCaveats.WithNumaNodes(assignments, domains, HostContext) : assignments;  // NUMA nodes (issue 14)
    }
}
