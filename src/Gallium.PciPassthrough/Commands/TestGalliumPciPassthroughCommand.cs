using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Host;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Checks that this host can do PCI passthrough: IOMMU on (and if not, whether firmware or kernel is why and
/// what to change), interrupt remapping, vfio-pci, root.</summary>
[Cmdlet(VerbsDiagnostic.Test, "GalliumPciPassthrough", HelpUri = HelpLinks.TestGalliumPciPassthrough)]
[OutputType(typeof(PassthroughReadiness))]
[OutputType(typeof(bool))]
public sealed class TestGalliumPciPassthroughCommand : GalliumCmdlet
{
    /// <summary>Return only $true or $false, like Test-Connection -Quiet.</summary>
    [Parameter]
    public SwitchParameter Quiet { get; set; }

    protected override void EndProcessing()
    {
        var readiness = new ReadinessProbe(HostContext).Probe();
        foreach (string problem in readiness.Problems) WriteVerbose(problem);
        if (Quiet) WriteObject(readiness.IsReady);
        else WriteObject(readiness);
    }
}
