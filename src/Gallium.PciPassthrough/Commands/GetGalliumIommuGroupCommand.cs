using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Host;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Lists IOMMU groups with their member devices and whether each group is viable for VFIO.</summary>
[Cmdlet(VerbsCommon.Get, "GalliumIommuGroup", DefaultParameterSetName = ByIdSet, HelpUri = HelpLinks.GetGalliumIommuGroup)]
[OutputType(typeof(IommuGroup))]
public sealed class GetGalliumIommuGroupCommand : GalliumCmdlet
{
    private const string ByIdSet = "ById";
    private const string ByDeviceSet = "ByDevice";

    [Parameter(ParameterSetName = ByIdSet, Position = 0)]
    [ValidateRange(0, int.MaxValue)]
    public int[]? Id { get; set; }

    [Parameter(ParameterSetName = ByDeviceSet, Mandatory = true, ValueFromPipeline = true)]
    public PciDevice[]? InputObject { get; set; }

    private IReadOnlyList<IommuGroup>? _groups;
    private readonly HashSet<int> _written = [];

    protected override void BeginProcessing()
    {
        var inventory = NewInventory();
        _groups = inventory.ReadGroups();
        if (!inventory.IommuOn)
            WriteWarning("The IOMMU is off on this host, so there are no IOMMU groups. Run Test-GalliumPciPassthrough to see why and how to turn it on.");
    }

    protected override void ProcessRecord()
    {
        if (ParameterSetName == ByIdSet)
        {
            if (Id is null) { foreach (var g in _groups!) Write(g); return; }
            foreach (int id in Id)
            {
                var group = _groups!.FirstOrDefault(g => g.Id == id);
                if (group is null)
                    WriteError(new GalliumException("IommuGroupNotFound", ErrorKind.ObjectNotFound, $"There is no IOMMU group {id} on this host.", id));
                else Write(group);
            }
            return;
        }
        foreach (var device in InputObject ?? [])
        {
            if (device.IommuGroup is not int id)
            {
                WriteError(new GalliumException("PciDeviceNotInIommuGroup", ErrorKind.ObjectNotFound,
                    $"{device.Address} is in no IOMMU group (the IOMMU is off, or the device is not behind it).", device));
                continue;
            }
            var group = _groups!.FirstOrDefault(g => g.Id == id);
            if (group is null) WriteError(new GalliumException("IommuGroupNotFound", ErrorKind.ObjectNotFound, $"There is no IOMMU group {id} on this host.", device));
            else Write(group);
        }
    }

    // A GPU and its audio function piped together name one group: write it once.
    private void Write(IommuGroup group)
    {
        if (_written.Add(group.Id)) WriteObject(group);
    }
}
