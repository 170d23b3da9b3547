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
    Copyright            = '(c) 2026 Gallium. MIT License.'
    Description          = 'PCI passthrough on Linux KVM/libvirt hypervisors: inventory devices and IOMMU groups, check IOMMU readiness, move whole IOMMU groups to vfio-pci and back, and assign devices to libvirt VMs. Runs on Linux with PowerShell 7.4 or later; the VM commands need libvirt''s client library (libvirt.so.0, Debian/Ubuntu package libvirt0). Reading works as any user (VM assignments need root or the libvirt group); changing the host or a VM needs root. New-GalliumSimulatedHost gives your own Pester suites a simulated host.'
    # Loaded at import so the model types ([Gallium.Pci.Host.HostContext], [Gallium.Pci.SizeText]) resolve before any cmdlet runs.
    RequiredAssemblies   = @('Gallium.Pci.dll')
    # Serialisation depth for remoting and Export-Clixml (a group's devices, a device's BARs survive as objects).
    TypesToProcess       = @('Gallium.PciPassthrough.types.ps1xml')
    FormatsToProcess     = @('Gallium.PciPassthrough.format.ps1xml')
    # No HelpInfoURI: the full help ships inside the module (en-US), so there is nothing for Update-Help to download;
    # plain Update-Help passes the module by, and Get-Help -Online opens the cmdlet's page in the repository (HelpUri).
    CmdletsToExport      = @(
        'Get-GalliumPciDevice'
        'Get-GalliumIommuGroup'
        'Test-GalliumPciPassthrough'
        'Enable-GalliumPciPassthrough'
        'Disable-GalliumPciPassthrough'
        'Get-GalliumVmPciDevice'
        'Add-GalliumVmPciDevice'
        'Remove-GalliumVmPciDevice'
        'Repair-GalliumVmPciDevice'
        'New-GalliumSimulatedHost'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            Tags         = @('PCI', 'Passthrough', 'VFIO', 'IOMMU', 'KVM', 'libvirt', 'Linux', 'PSEdition_Core')
            # The repository; LicenseUri and every cmdlet's HelpUri (HelpLinks.cs) are below it (Repository.Tests.ps1 checks).
            ProjectUri   = 'https://github.com/gallium-dev/Gallium.PciPassthrough'
            LicenseUri   = 'https://github.com/gallium-dev/Gallium.PciPassthrough/blob/main/LICENSE'
            ReleaseNotes = '0.1.0: first release. Inventory (Get-GalliumPciDevice, Get-GalliumIommuGroup), readiness (Test-GalliumPciPassthrough), whole-group Enable/Disable-GalliumPciPassthrough (atomic, persisted, repaired after interruption), VM assignment (Add/Remove/Get-GalliumVmPciDevice) with the large-BAR MMIO fix (Repair-GalliumVmPciDevice), and New-GalliumSimulatedHost for your own Pester suites.'
        }
    }
}
