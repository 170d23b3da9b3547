namespace Gallium.PciPassthrough;

/// <summary>Where Get-Help -Online sends the user: each cmdlet's markdown page in the repository (docs/en-US), the same
/// address the page's "online version" names. Repository.Tests.ps1 holds these to the manifest's ProjectUri.</summary>
internal static class HelpLinks
{
    public const string Repository = "https://github.com/gallium-dev/Gallium.PciPassthrough";
    public const string Docs = Repository + "/blob/main/docs/en-US/";

    public const string GetGalliumPciDevice = Docs + "Get-GalliumPciDevice.md";
    public const string GetGalliumIommuGroup = Docs + "Get-GalliumIommuGroup.md";
    public const string TestGalliumPciPassthrough = Docs + "Test-GalliumPciPassthrough.md";
    public const string EnableGalliumPciPassthrough = Docs + "Enable-GalliumPciPassthrough.md";
    public const string DisableGalliumPciPassthrough = Docs + "Disable-GalliumPciPassthrough.md";
    public const string GetGalliumVmPciDevice = Docs + "Get-GalliumVmPciDevice.md";
    public const string AddGalliumVmPciDevice = Docs + "Add-GalliumVmPciDevice.md";
    public const string RemoveGalliumVmPciDevice = Docs + "Remove-GalliumVmPciDevice.md";
    public const string RepairGalliumVmPciDevice = Docs + "Repair-GalliumVmPciDevice.md";
    public const string NewGalliumSimulatedHost = Docs + "New-GalliumSimulatedHost.md";
}
