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
        LibvirtUri.Validate(resolved);
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
        IReadOnlyDictionary<Guid, (int State, int Reason)>? states;
        unsafe
        {
            // The array is NULL-terminated; each element is freed by its handle, then the array itself (REFERENCE §5.3).
            for (int i = 0; i < count; i++) handles[i] = new DomainHandle(((IntPtr*)array)[i]);
            states = count == 0 ? null : Batch.TryReadStates((IntPtr*)array);
            NativeMemory.Free((void*)array);
        }
        try
        {
            // Listed after the full list, so a domain that turned transient (or persistent) meanwhile gets its new kind's XML.
            var transient = count == 0 ? null : TryListTransient();
            var described = new LibvirtDomain?[count];
            // Only the XML is one call per domain: fetch several at once (libvirtd serves up to 5 calls per client at a time).
            if (count < ParallelThreshold)
            {
                for (int i = 0; i < count; i++) described[i] = TryDescribe(handles[i], states, transient);
            }
            else
            {
                try
                {
                    Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = ConcurrentCalls },
                        i => described[i] = TryDescribe(handles[i], states, transient));
                }
                catch (AggregateException e) when (e.InnerExceptions.Count > 0)
                {
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerExceptions[0]).Throw();
                    throw;
                }
            }
            var domains = new List<LibvirtDomain>(count);
            foreach (var domain in described)
            {
                if (domain is not null) domains.Add(domain);
            }
            return domains;
        }
        finally
        {
            foreach (var handle in handles) handle.Dispose();
        }
    }

    /// <summary>Below this many domains one thread is quicker than starting workers.</summary>
    private const int ParallelThreshold = 16;
    /// <summary>Calls in flight at once: under libvirtd's default max_client_requests (5), so none waits in the daemon.</summary>
    private const int ConcurrentCalls = 4;

    /// <summary>UUIDs of the transient domains, from one listing; null when libvirt cannot say (each domain is then asked).</summary>
    private HashSet<Guid>? TryListTransient()
    {
        int count = Virt.virConnectListAllDomains(_connection, out IntPtr array, Batch.ListTransient);
        if (count < 0)
        {
            _ = LibvirtRuntime.LastError();  // clear it: the per-domain question still works
            return null;
        }
        var uuids = new HashSet<Guid>();
        unsafe
        {
            for (int i = 0; i < count; i++)
            {
                IntPtr dom = ((IntPtr*)array)[i];
                if (Batch.Uuid(dom) is { } uuid) uuids.Add(uuid);
                Virt.virDomainFree(dom);
            }
            NativeMemory.Free((void*)array);
        }
        return uuids;
    }

    public LibvirtDomain GetDomain(string vmName)
    {
        using var domain = Lookup(vmName);
        return TryDescribe(domain) ?? throw new VmNotFoundException(vmName, null);
    }

    public string GetDefinition(string vmName)
    {
        using var domain = Lookup(vmName);
        return Virt.TakeString(Virt.virDomainGetXMLDesc(domain, Virt.VIR_DOMAIN_XML_INACTIVE | Virt.VIR_DOMAIN_XML_SECURE))
            ?? throw Failed($"read the definition of VM '{vmName}'", vmName, vmName);
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
        // Marshalling stops at a NUL: "web1\0x" would look up web1 (REFERENCE §5.3).
        VmNameInvalidException.ThrowIfInvalid(vmName);
        var domain = Virt.virDomainLookupByName(_connection, vmName);
        if (!domain.IsInvalid) return domain;
        var exception = Failed($"look up VM '{vmName}'", vmName, vmName);
        domain.Dispose();
        throw exception;
    }

    /// <summary>Name, UUID, state, persistence and XML of one domain; null when it vanished meanwhile (code 42). State and
    /// persistence come from the listing's batch answers when given, else from one call each.</summary>
    private LibvirtDomain? TryDescribe(DomainHandle domain,
        IReadOnlyDictionary<Guid, (int State, int Reason)>? states = null, HashSet<Guid>? transient = null)
    {
        try
        {
            string name = Marshal.PtrToStringUTF8(Virt.virDomainGetName(domain)) ?? throw Failed("read a VM's name", Uri);
            Guid uuid = ReadUuid(domain, name);
            int state, reason;
            if (states is not null && states.TryGetValue(uuid, out var known)) (state, reason) = known;
            else if (Virt.virDomainGetState(domain, out state, out reason, 0) < 0) throw Failed($"read the state of VM '{name}'", name, name);
            int persistent = transient is not null ? (transient.Contains(uuid) ? 0 : 1) : Virt.virDomainIsPersistent(domain);
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

/// <summary>The batch calls that answer for every listed domain at once, so listing N domains costs N + 3 calls, not 3N + 1.
/// Prototypes and layouts from libvirt 9.0 libvirt-domain.h and libvirt-common.h (since 1.2.8).</summary>
internal static unsafe partial class Batch
{
    /// <summary>VIR_CONNECT_LIST_DOMAINS_TRANSIENT (REFERENCE §5.4).</summary>
    public const uint ListTransient = 1 << 3;
    /// <summary>VIR_DOMAIN_STATS_STATE: state.state and state.reason, no monitor call.</summary>
    private const uint StatsState = 1 << 0;
    /// <summary>VIR_TYPED_PARAM_INT.</summary>
    private const int TypedParamInt = 1;
    /// <summary>VIR_TYPED_PARAM_FIELD_LENGTH.</summary>
    private const int FieldLength = 80;

    /// <summary>struct _virDomainStatsRecord.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct StatsRecord
    {
        public IntPtr Dom;
        public TypedParameter* Params;
        public int NParams;
    }

    /// <summary>struct _virTypedParameter: char field[80]; int type; an 8-byte union (sizeof 96 on LP64).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct TypedParameter
    {
        public fixed byte Field[FieldLength];
        public int Type;
        public long Value;
    }

    /// <summary>State and reason of the domains in a NULL-terminated array, by UUID, from one call; null when the driver
    /// cannot answer (each domain is then asked on its own). A domain missing from the answer is asked on its own too.</summary>
    public static Dictionary<Guid, (int State, int Reason)>? TryReadStates(IntPtr* domains)
    {
        if (!Environment.Is64BitProcess) return null;  // the union's alignment differs on 32-bit ABIs: ask each domain there
        int count = virDomainListGetStats(domains, StatsState, out IntPtr records, 0);
        if (count < 0)
        {
            _ = LibvirtRuntime.LastError();  // clear it: the per-domain calls still work
            return null;
        }
        try
        {
            var states = new Dictionary<Guid, (int, int)>(count);
            for (int i = 0; i < count; i++)
            {
                var record = ((StatsRecord**)records)[i];
                int? state = null, reason = null;
                for (int p = 0; p < record->NParams; p++)
                {
                    var param = &record->Params[p];
                    if (param->Type != TypedParamInt) continue;
                    var field = new ReadOnlySpan<byte>(param->Field, FieldLength);
                    field = field[..Math.Max(0, field.IndexOf((byte)0))];
                    if (field.SequenceEqual("state.state"u8)) state = (int)param->Value;
                    else if (field.SequenceEqual("state.reason"u8)) reason = (int)param->Value;
                }
                if (state is int s && reason is int r && Uuid(record->Dom) is { } uuid) states[uuid] = (s, r);
            }
            return states;
        }
        finally
        {
            virDomainStatsRecordListFree(records);  // frees each record's domain reference too
        }
    }

    /// <summary>A domain's UUID, read locally (the domain object carries it).</summary>
    public static Guid? Uuid(IntPtr domain)
    {
        byte* buffer = stackalloc byte[Virt.UuidStringBufferLength];
        if (virDomainGetUUIDString(domain, buffer) < 0)
        {
            _ = LibvirtRuntime.LastError();
            return null;
        }
        return Guid.TryParse(Marshal.PtrToStringUTF8((IntPtr)buffer), out var uuid) ? uuid : null;
    }

    [LibraryImport(Virt.Lib)] private static partial int virDomainListGetStats(IntPtr* domains, uint stats, out IntPtr records, uint flags);
    [LibraryImport(Virt.Lib)] private static partial void virDomainStatsRecordListFree(IntPtr records);
    [LibraryImport(Virt.Lib)] private static partial int virDomainGetUUIDString(IntPtr domain, byte* buffer);
}
