#
# Gallium.PciPassthrough module manifest. ModuleVersion here is the project's one version source:
# Directory.Build.props reads it for the assemblies' versions.
#
@{
    RootModule           = 'Gallium.PciPassthrough.dll'
    ModuleVersion        = '0.1.0'
    CompatiblePSEditions = @('Core')
    PowerShellVersion    = '7.4'
    GUID                 = '5b3f0c2e-8d41-4f7a-9a8e-2c6d1e0f4b71'
    Author               = 'Gallium'
    CompanyName          = 'Gallium'
    Copyright            = '(c) Gallium. All rights reserved.'
    Description          = 'PCI passthrough on Linux KVM/libvirt hypervisors: inventory devices and IOMMU groups, check IOMMU readiness, move whole IOMMU groups to vfio-pci and back, and assign devices to libvirt VMs.'
    # Loaded at import so the model types ([Gallium.Pci.Host.HostContext], [Gallium.Pci.SizeText]) resolve before any cmdlet runs.
    RequiredAssemblies   = @('Gallium.Pci.dll')
    FormatsToProcess     = @('Gallium.PciPassthrough.format.ps1xml')
    CmdletsToExport      = @(
        'Get-GalliumPciDevice'
        'Get-GalliumIommuGroup'
        'Test-GalliumPciPassthrough'
        'Get-GalliumVmPciDevice'
        'Add-GalliumVmPciDevice'
        'Remove-GalliumVmPciDevice'
        'Repair-GalliumVmPciDevice'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            Tags       = @('PCI', 'Passthrough', 'VFIO', 'IOMMU', 'KVM', 'libvirt', 'Linux')
            ProjectUri = 'https://gallium.dev/pci-passthrough'
        }
    }
}
