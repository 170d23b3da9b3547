using System.Management.Automation;
using Gallium.Pci.Testing;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Builds a simulated host for the user's own Pester suites (a kernel that interprets writes as Linux does, and
/// libvirt's own test driver for the VMs) and makes it the session's host: the other Gallium commands in this scope and
/// below then work on it instead of the real machine. The simulated kernel (Gallium.Pci.Testing.dll, in the module
/// folder) is loaded by this command only, so importing the module stays as cheap as before.</summary>
[Cmdlet(VerbsCommon.New, "GalliumSimulatedHost", HelpUri = HelpLinks.NewGalliumSimulatedHost)]
[OutputType("Gallium.Pci.Testing.SimulatedHost")]   // by name: typeof would load the simulated kernel at Import-Module
public sealed class NewGalliumSimulatedHostCommand : GalliumCmdlet
{
    /// <summary>Which host: Workstation (default), IommuOff or GpuServer (the names of
    /// <see cref="SimulatedHostPreset"/>). A string, not that enum: a field of a value type from the simulated kernel's
    /// assembly would make the CLR load it whenever PowerShell lists this assembly's types at Import-Module.</summary>
    [Parameter(Position = 0)]
    [ValidateSet("Workstation", "IommuOff", "GpuServer")]
    public string Preset { get; set; } = "Workstation";

    /// <summary>An empty or missing folder to build the host in; a new folder on tmpfs when omitted.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Path { get; set; }

    /// <summary>The commands run as a user who is not root: reads work, changes are refused with RootRequired.</summary>
    [Parameter]
    public SwitchParameter Unprivileged { get; set; }

    /// <summary>The libvirt the VM commands use instead of the host's own test driver: a test:///path/node.xml file of yours
    /// (held open for the host's lifetime, so VM changes persist between commands) or a real one such as qemu:///system.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? LibvirtUri { get; set; }

    /// <summary>More stopped UEFI VMs (q35, OVMF, four free PCIe root ports) to define in the host's own libvirt.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[]? VmName { get; set; }

    /// <summary>Build the host without making it the session's host (GalliumHostContext is left as it is).</summary>
    [Parameter]
    public SwitchParameter NoHostContext { get; set; }

    protected override void EndProcessing()
    {
        string? root = Path is null ? null : SessionState.Path.GetUnresolvedProviderPathFromPSPath(Path);
        SimulatedHost host;
        var preset = Enum.Parse<SimulatedHostPreset>(Preset, ignoreCase: true);
        try { host = SimulatedHost.Create(preset, root, !Unprivileged, LibvirtUri, VmName); }
        catch (Exception e) when (e is Pci.GalliumException or IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            ThrowTerminatingError(new ErrorRecord(e, e is Pci.GalliumException g ? g.ErrorId : "SimulatedHostNotCreated",
                ErrorCategory.InvalidOperation, root ?? Preset));
            return;
        }
        WriteVerbose($"Simulated {preset} host in {host.RootDirectory}; VMs in {host.LibvirtUri}.");
        // Set in the caller's scope: a Pester BeforeAll's host is seen by its It blocks and is gone after its Describe.
        if (!NoHostContext) SessionState.PSVariable.Set(HostContextVariable, host.Context);
        WriteObject(host);
    }
}
