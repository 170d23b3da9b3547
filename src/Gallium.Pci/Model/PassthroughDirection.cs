namespace Gallium.Pci;

/// <summary>Which way a passthrough change moves an IOMMU group.</summary>
public enum PassthroughDirection
{
    /// <summary>Whole IOMMU group to vfio-pci, persisted.</summary>
    Enable,
    /// <summary>Whole IOMMU group back to the host drivers the kernel picks; records removed.</summary>
    Disable,
}
