using System.Runtime.InteropServices;

namespace Gallium.Pci.Libvirt;

/// <summary>A connection to libvirt over <c>libvirt.so.0</c>. Each libvirt error is read on the calling thread right
/// after the failed call (REFERENCE §5.5); no call here awaits, so the thread cannot change in between.</summary>
public sealed class LibvirtConnection : ILibvirt
{
    private readonly ConnectionHandle _connection;

    private LibvirtConnection(ConnectionHandle connection, string uri)
    {
        _connection = connection;
        Uri = uri;
    }

    public string Uri { get; }

    /// <summary>Opens <paramref name="uri"/> (see <see cref="LibvirtUri.Resolve(string?)"/>). Throws
    /// <see cref="LibvirtNotInstalledException"/> or <see cref="LibvirtConnectionFailedException"/>.</summary>
    public static LibvirtConnection Open(string? uri = null, bool readOnly = false)
    {
        string resolved = LibvirtUri.Resolve(uri);
        LibvirtRuntime.EnsureReady();
        ConnectionHandle handle = readOnly ? Virt.virConnectOpenReadOnly(resolved) : Virt.virConnectOpen(resolved);
        if (handle.IsInvalid)
        {
            var error = LibvirtRuntime.LastError();
            handle.Dispose();
            throw new LibvirtConnectionFailedException(resolved, error);
        }
        return new LibvirtConnection(handle, resolved);
    }

    public Version LibraryVersion
    {
        get
        {
            if (Virt.virConnectGetLibVersion(_connection, out ulong v) < 0) throw Failed("read the library version", Uri);
            // major * 1,000,000 + minor * 1,000 + release (REFERENCE §5.3).
            return new Version((int)(v / 1_000_000), (int)(v / 1_000 % 1_000), (int)(v % 1_000));
        }
    }

    public IReadOnlyList<LibvirtDomain> ListDomains()
    {
        // flags = 0: all domains, active and inactive, persistent and transient (REFERENCE §5.4).
        int count = Virt.virConnectListAllDomains(_connection, out IntPtr array, 0);
        if (count < 0) throw Failed("list the VMs", Uri);
        var handles = new DomainHandle[count];
        unsafe
        {
            // The array is NULL-terminated; each element is freed by its handle, then the array itself (REFERENCE §5.3).
            for (int i = 0; i < count; i++) handles[i] = new DomainHandle(((IntPtr*)array)[i]);
            NativeMemory.Free((void*)array);
        }
        try
        {
            var domains = new List<LibvirtDomain>(count);
            foreach (var handle in handles)
            {
                var domain = TryDescribe(handle);
                if (domain is not null) domains.Add(domain);
            }
            return domains;
        }
        finally
        {
            foreach (var handle in handles) handle.Dispose();
        }
    }

    public LibvirtDomain GetDomain(string vmName)
    {
        using var domain = Lookup(vmName);
        return TryDescribe(domain) ?? throw new VmNotFoundException(vmName, null);
    }

    public void AttachDeviceToConfig(string vmName, string deviceXml)
    {
        using var domain = Lookup(vmName);
        if (Virt.virDomainAttachDeviceFlags(domain, deviceXml, Virt.VIR_DOMAIN_AFFECT_CONFIG) < 0)
            throw Failed($"add the device to the definition of VM '{vmName}'", vmName, vmName);
    }

    public void DetachDeviceFromConfig(string vmName, string deviceXml)
    {
        using var domain = Lookup(vmName);
        if (Virt.virDomainDetachDeviceFlags(domain, deviceXml, Virt.VIR_DOMAIN_AFFECT_CONFIG) < 0)
            throw Failed($"remove the device from the definition of VM '{vmName}'", vmName, vmName);
    }

    public LibvirtDomain DefineDomain(string domainXml)
    {
        string target = DomainXml.TryReadName(domainXml) ?? "(domain XML)";
        using var domain = Virt.virDomainDefineXML(_connection, domainXml);
        if (domain.IsInvalid) throw Failed($"define VM '{target}'", target);
        return TryDescribe(domain) ?? throw new VmNotFoundException(target, null);
    }

    public LibvirtDomain CreateTransientDomain(string domainXml, bool paused)
    {
        string target = DomainXml.TryReadName(domainXml) ?? "(domain XML)";
        using var domain = Virt.virDomainCreateXML(_connection, domainXml, paused ? Virt.VIR_DOMAIN_START_PAUSED : 0);
        if (domain.IsInvalid) throw Failed($"create VM '{target}'", target);
        return TryDescribe(domain) ?? throw new VmNotFoundException(target, null);
    }

    public void StartDomain(string vmName, bool paused)
    {
        using var domain = Lookup(vmName);
        if (Virt.virDomainCreateWithFlags(domain, paused ? Virt.VIR_DOMAIN_START_PAUSED : 0) < 0)
            throw Failed($"start VM '{vmName}'", vmName, vmName);
    }

    public void DestroyDomain(string vmName)
    {
        using var domain = Lookup(vmName);
        if (Virt.virDomainDestroy(domain) < 0) throw Failed($"stop VM '{vmName}'", vmName, vmName);
    }

    public void UndefineDomain(string vmName)
    {
        using var domain = Lookup(vmName);
        if (Virt.virDomainUndefineFlags(domain, Virt.VIR_DOMAIN_UNDEFINE_NVRAM) < 0)
            throw Failed($"undefine VM '{vmName}'", vmName, vmName);
    }

    public void Dispose() => _connection.Dispose();

    public override string ToString() => Uri;

    private DomainHandle Lookup(string vmName)
    {
        ArgumentNullException.ThrowIfNull(vmName);
        var domain = Virt.virDomainLookupByName(_connection, vmName);
        if (!domain.IsInvalid) return domain;
        var exception = Failed($"look up VM '{vmName}'", vmName, vmName);
        domain.Dispose();
        throw exception;
    }

    /// <summary>Name, UUID, state, persistence and XML of one domain; null when it vanished meanwhile (code 42).</summary>
    private LibvirtDomain? TryDescribe(DomainHandle domain)
    {
        try
        {
            string name = Marshal.PtrToStringUTF8(Virt.virDomainGetName(domain)) ?? throw Failed("read a VM's name", Uri);
            Guid uuid = ReadUuid(domain, name);
            if (Virt.virDomainGetState(domain, out int state, out int reason, 0) < 0) throw Failed($"read the state of VM '{name}'", name, name);
            int persistent = Virt.virDomainIsPersistent(domain);
            if (persistent < 0) throw Failed($"read whether VM '{name}' is persistent", name, name);
            // The persistent definition is the truth for "assigned"; a transient domain has only its live XML (DESIGN.md).
            string xml = Virt.TakeString(Virt.virDomainGetXMLDesc(domain, persistent == 1 ? Virt.VIR_DOMAIN_XML_INACTIVE : 0))
                ?? throw Failed($"read the XML of VM '{name}'", name, name);
            return new LibvirtDomain(name, uuid, (VmState)state, reason, persistent == 1, xml);
        }
        catch (VmNotFoundException)
        {
            return null;
        }
    }

    private Guid ReadUuid(DomainHandle domain, string name)
    {
        unsafe
        {
            byte* buffer = stackalloc byte[Virt.UuidStringBufferLength];
            if (Virt.virDomainGetUUIDString(domain, buffer) < 0) throw Failed($"read the UUID of VM '{name}'", name, name);
            return Guid.Parse(Marshal.PtrToStringUTF8((IntPtr)buffer)!);
        }
    }

    /// <summary>The exception for the libvirt call that just failed on this thread.</summary>
    private static LibvirtException Failed(string operation, object? target, string? vmName = null)
    {
        var error = LibvirtRuntime.LastError();
        if (vmName is not null && error.Code == LibvirtErrorCode.NoDomain) return new VmNotFoundException(vmName, error);
        return new LibvirtOperationFailedException(operation, target, error);
    }
}
