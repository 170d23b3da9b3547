using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;
using Gallium.PciPassthrough.Completers;

namespace Gallium.PciPassthrough;

/// <summary>Base of the cmdlets that talk to libvirt: -Uri on each (default: the host's libvirt, LIBVIRT_DEFAULT_URI, else
/// qemu:///system; a simulated host's own test driver).</summary>
public abstract class LibvirtCmdlet : GalliumCmdlet
{
    /// <summary>libvirt connection URI, e.g. qemu:///system or qemu+ssh://root@host/system?no_tty=1.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Uri { get; set; }

    /// <summary>The URI this command talks to: -Uri, else the host's default.</summary>
    protected string ResolvedUri => ResolveLibvirtUri(Uri);

    /// <summary>Device checks read this machine's sysfs, so a command that joins them with VM definitions must talk to
    /// this machine's libvirt; another host is reached with Invoke-Command, where the module runs next to its kernel. A URI
    /// that is no URI at all is LibvirtUriInvalid, never "another host".</summary>
    protected void RequireLocalLibvirt()
    {
        string uri = ResolvedUri;
        try { LibvirtUri.Validate(uri); }
        catch (LibvirtUriInvalidException e) { ThrowTerminatingError(e); }
        if (LibvirtUri.IsLocal(uri)) return;
        ThrowTerminatingError(new GalliumException("LibvirtUriNotLocal", ErrorKind.InvalidArgument,
            $"'{uri}' is another host's libvirt, but {MyInvocation.MyCommand.Name} checks devices in this machine's sysfs.", uri)
        {
            RecommendedAction = $"Run it on that host: Invoke-Command -HostName <host> {{ {MyInvocation.MyCommand.Name} ... }}",
        });
    }

    protected ILibvirt OpenLibvirt(bool readOnly = false)
    {
        WriteVerbose($"libvirt: connect to {ResolvedUri}{(readOnly ? " (read-only)" : "")}");
        var connector = HostContext.Libvirt;
        return StoppableLibvirt.Open(() => connector.Open(Uri, readOnly), StopToken);   // Ctrl+C leaves a wedged libvirtd
    }

    /// <summary>The host's CPU as the MMIO sizing needs it; null when /proc/cpuinfo does not say (sizing then skipped).</summary>
    protected HostCpu? ReadHostCpu()
    {
        try { return HostCpu.Read(HostContext.Procfs); }
        catch (GalliumException e) { WriteVerbose(e.Message); return null; }
    }

    protected HostCpu RequireHostCpu() => HostCpu.Read(HostContext.Procfs);

    /// <summary>A VM name as typed is checked before it reaches libvirt: a NUL would cut it short (VmNameInvalid).</summary>
    protected bool ValidVmName(string name)
    {
        try { VmNameInvalidException.ThrowIfInvalid(name); return true; }
        catch (VmNameInvalidException e) { WriteError(e); return false; }
    }
}
