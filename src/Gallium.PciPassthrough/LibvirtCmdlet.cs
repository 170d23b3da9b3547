using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;
using Gallium.PciPassthrough.Completers;

namespace Gallium.PciPassthrough;

/// <summary>Base of the cmdlets that talk to libvirt: -Uri on each (default LIBVIRT_DEFAULT_URI, else qemu:///system).</summary>
public abstract class LibvirtCmdlet : GalliumCmdlet
{
    /// <summary>libvirt connection URI, e.g. qemu:///system or qemu+ssh://root@host/system?no_tty=1.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Uri { get; set; }

    protected ILibvirt OpenLibvirt(bool readOnly = false)
    {
        WriteVerbose($"libvirt: connect to {LibvirtUri.Resolve(Uri)}{(readOnly ? " (read-only)" : "")}");
        return LibvirtConnection.Open(Uri, readOnly);
    }

    /// <summary>The host's CPU as the MMIO sizing needs it; null when /proc/cpuinfo does not say (sizing then skipped).</summary>
    protected HostCpu? ReadHostCpu()
    {
        try { return HostCpu.Read(HostContext.Procfs); }
        catch (GalliumException e) { WriteVerbose(e.Message); return null; }
    }

    protected HostCpu RequireHostCpu() => HostCpu.Read(HostContext.Procfs);

    // Host-level failures stop the command; one VM's or device's problem is reported and the next goes on.
    protected static bool IsPrerequisite(GalliumException e) =>
        e.ErrorId is "LibvirtConnectionFailed" or "LibvirtNotInstalled" or "HostAddressBitsUnknown";
}
