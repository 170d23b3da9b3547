namespace Gallium.Pci.Libvirt;

/// <summary>The one seam to libvirt (DESIGN.md "Libvirt"): what the rest of the core needs from a connection.
/// A VM is named by its libvirt domain name. Failures are <see cref="LibvirtException"/>s.</summary>
public interface ILibvirt : IDisposable
{
    /// <summary>The URI this connection was opened with (after <see cref="LibvirtUri.Resolve(string?)"/>).</summary>
    string Uri { get; }

    /// <summary>The libvirt library version the daemon side reports (9.0.0 on Debian 12).</summary>
    Version LibraryVersion { get; }

    /// <summary>Every domain, running or not, persistent or transient, in one <c>virConnectListAllDomains</c> pass, each
    /// with its persistent (inactive) XML — or its live XML when it is transient. A domain that vanishes while the list is
    /// read is left out.</summary>
    IReadOnlyList<LibvirtDomain> ListDomains();

    /// <summary>One domain by name. Throws <see cref="VmNotFoundException"/>.</summary>
    LibvirtDomain GetDomain(string vmName);

    /// <summary>The persistent definition exactly as libvirt keeps it, secrets included (<c>VIR_DOMAIN_XML_INACTIVE |
    /// VIR_DOMAIN_XML_SECURE</c>, REFERENCE §8.3): the only text a definition may be redefined from, or VNC/SPICE passwords
    /// are lost. Needs a read-write connection.</summary>
    string GetDefinition(string vmName);

    /// <summary>Adds a device (one <c>&lt;hostdev&gt;</c>, <c>&lt;controller&gt;</c>, ...) to the VM's persistent definition only
    /// (<c>VIR_DOMAIN_AFFECT_CONFIG</c>, REFERENCE §5.2). A device already present fails with code 55 OperationInvalid.</summary>
    void AttachDeviceToConfig(string vmName, string deviceXml);

    /// <summary>Removes a device from the VM's persistent definition; the XML must be as specific as the definition
    /// (REFERENCE §5.2). A device not present fails with code 99 DeviceMissing.</summary>
    void DetachDeviceFromConfig(string vmName, string deviceXml);

    /// <summary>Defines (or redefines, same name and UUID) a persistent domain.</summary>
    LibvirtDomain DefineDomain(string domainXml);

    /// <summary>Creates and starts a transient domain (no persistent definition).</summary>
    LibvirtDomain CreateTransientDomain(string domainXml, bool paused);

    /// <summary>Starts a defined domain, optionally paused before the guest CPU runs.</summary>
    void StartDomain(string vmName, bool paused);

    /// <summary>Stops a running domain at once (power cut); a transient domain is gone afterwards.</summary>
    void DestroyDomain(string vmName);

    /// <summary>Removes a domain's persistent definition (and its UEFI variable store, if any).</summary>
    void UndefineDomain(string vmName);
}

/// <summary>How a host's libvirt is reached: one connection per cmdlet invocation (the cmdlet's <c>-Uri</c>, else
/// <see cref="DefaultUri"/>). The caller disposes what <see cref="Open"/> returns.</summary>
public interface ILibvirtConnector
{
    /// <summary>The URI a command uses when it is given none.</summary>
    string DefaultUri { get; }

    /// <summary>The libvirt that holds every VM that can use this host's devices (Disable asks it, whatever
    /// <see cref="DefaultUri"/> says): qemu:///system, or a simulated host's own test driver.</summary>
    string SystemUri { get; }

    /// <summary>Opens <paramref name="uri"/>; null means <see cref="DefaultUri"/>.</summary>
    ILibvirt Open(string? uri, bool readOnly = false);
}

/// <summary>Opens real libvirt connections: the default is <c>LIBVIRT_DEFAULT_URI</c>, else qemu:///system.</summary>
public sealed class LibvirtConnector : ILibvirtConnector
{
    public static LibvirtConnector Instance { get; } = new();

    public string DefaultUri => LibvirtUri.Resolve(null);

    public string SystemUri => LibvirtUri.Default;

    public ILibvirt Open(string? uri, bool readOnly = false) => LibvirtConnection.Open(uri, readOnly);
}

/// <summary>A libvirt domain as one listing saw it.</summary>
/// <param name="Xml">The persistent definition (<c>VIR_DOMAIN_XML_INACTIVE</c>) of a persistent domain; the live XML of a transient one.</param>
public sealed record LibvirtDomain(string Name, Guid Uuid, VmState State, int StateReason, bool IsPersistent, string Xml)
{
    public override string ToString() => $"{Name} ({State}{(IsPersistent ? "" : ", transient")})";
}

/// <summary>Which libvirt to talk to when the caller gives no URI.</summary>
public static class LibvirtUri
{
    public const string EnvironmentVariable = "LIBVIRT_DEFAULT_URI";
    /// <summary>The privileged daemon: PCI passthrough needs it (REFERENCE §5.6).</summary>
    public const string Default = "qemu:///system";

    /// <summary>Explicit URI, else <c>LIBVIRT_DEFAULT_URI</c>, else <c>qemu:///system</c>. Never NULL: libvirt's own probing
    /// could pick a session daemon that cannot assign host devices.</summary>
    public static string Resolve(string? explicitUri) =>
        Resolve(explicitUri, Environment.GetEnvironmentVariable(EnvironmentVariable));

    public static string Resolve(string? explicitUri, string? environmentUri) =>
        !string.IsNullOrWhiteSpace(explicitUri) ? explicitUri.Trim()
        : !string.IsNullOrWhiteSpace(environmentUri) ? environmentUri.Trim()
        : Default;

    /// <summary>Throws <see cref="LibvirtUriInvalidException"/> unless the text is a URI libvirt could open: an absolute
    /// <c>driver[+transport]://[host][/path][?query]</c> (or <c>driver:///path</c>) without spaces or control characters.</summary>
    public static void Validate(string uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        string? why = uri.Any(char.IsControl) ? "it contains a control character"
            : uri.Any(char.IsWhiteSpace) ? "it contains white space"
            : !System.Uri.TryCreate(uri, UriKind.Absolute, out var parsed) ? "it is not an absolute URI"
            : !System.Text.RegularExpressions.Regex.IsMatch(parsed.Scheme, "^[a-z][a-z0-9]*(\\+[a-z0-9]+)?$") ? $"'{parsed.Scheme}' is not a libvirt driver[+transport] scheme"
            : !uri.Contains("://", StringComparison.Ordinal) ? "libvirt URIs have the form driver:///path or driver+transport://host/path"
            : null;
        if (why is not null) throw new LibvirtUriInvalidException(uri, why);
    }

    /// <summary>True for this machine's privileged QEMU daemon: <c>qemu:///system</c>, also over the unix transport or with
    /// query parameters (<c>?socket=</c> for a test daemon). Only it holds every VM that can use this host's PCI devices.</summary>
    public static bool IsSystem(string uri) =>
        System.Uri.TryCreate(uri, UriKind.Absolute, out var parsed)
        && parsed.Scheme is "qemu" or "qemu+unix"
        && parsed.Host.Length == 0
        && parsed.AbsolutePath == "/system";

    /// <summary>True when the URI reaches the libvirt of this machine (no host, or a name of this machine): device state
    /// comes from this machine's sysfs, so only this machine's VM definitions may be joined with it.</summary>
    public static bool IsLocal(string uri)
    {
        if (!System.Uri.TryCreate(uri, UriKind.Absolute, out var parsed)) return false;
        string host = parsed.Host.Trim('[', ']');
        return host.Length == 0
            || host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || host == "127.0.0.1" || host == "::1"
            || host.Equals(Environment.MachineName, StringComparison.OrdinalIgnoreCase)
            || host.Equals(System.Net.Dns.GetHostName(), StringComparison.OrdinalIgnoreCase);
    }
}
