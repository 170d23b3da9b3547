using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Gallium.Pci.Libvirt;

/// <summary>The libvirt C API this module uses (REFERENCE §5.3: prototypes from libvirt 9.0 headers).
/// Every call must be preceded by <see cref="LibvirtRuntime.EnsureReady"/> so a missing library is reported as
/// <see cref="LibvirtNotInstalledException"/>, never as a DllNotFoundException.</summary>
internal static unsafe partial class Virt
{
    /// <summary>The SONAME; <c>libvirt.so</c> only exists with the -dev package (REFERENCE §5.3).</summary>
    public const string Lib = "libvirt.so.0";

    // virDomainXMLFlags, virDomainModificationImpact, virDomainCreateFlags, virDomainUndefineFlagsValues (REFERENCE §5.4).
    /// <summary>Include passwords and other secrets (refused on a read-only connection, REFERENCE §8.3).</summary>
    public const uint VIR_DOMAIN_XML_SECURE = 1;
    public const uint VIR_DOMAIN_XML_INACTIVE = 2;
    public const uint VIR_DOMAIN_AFFECT_CONFIG = 2;
    public const uint VIR_DOMAIN_START_PAUSED = 1;
    public const uint VIR_DOMAIN_UNDEFINE_NVRAM = 4;
    /// <summary>VIR_UUID_STRING_BUFLEN: 36 characters plus the terminating NUL.</summary>
    public const int UuidStringBufferLength = 37;

    /// <summary>struct _virError; sizeof = 80 on x86_64 (REFERENCE §5.3 [V]).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct VirError
    {
        public int Code;
        public int Domain;
        public IntPtr Message;
        public int Level;
        public IntPtr Conn;
        public IntPtr Dom;
        public IntPtr Str1, Str2, Str3;
        public int Int1, Int2;
        public IntPtr Net;
    }

    [LibraryImport(Lib)] public static partial int virInitialize();
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial ConnectionHandle virConnectOpen(string? name);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial ConnectionHandle virConnectOpenReadOnly(string? name);
    [LibraryImport(Lib)] public static partial int virConnectClose(IntPtr conn);
    // unsigned long is 64-bit on LP64 (REFERENCE §5.3).
    [LibraryImport(Lib)] public static partial int virConnectGetLibVersion(ConnectionHandle conn, out ulong libVer);
    [LibraryImport(Lib)] public static partial int virConnectListAllDomains(ConnectionHandle conn, out IntPtr domains, uint flags);

    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial DomainHandle virDomainLookupByName(ConnectionHandle conn, string name);
    [LibraryImport(Lib)] public static partial IntPtr virDomainGetName(DomainHandle dom);   // const char*: owned by libvirt
    [LibraryImport(Lib)] public static partial int virDomainGetUUIDString(DomainHandle dom, byte* buf);
    [LibraryImport(Lib)] public static partial int virDomainGetState(DomainHandle dom, out int state, out int reason, uint flags);
    [LibraryImport(Lib)] public static partial int virDomainIsPersistent(DomainHandle dom);
    [LibraryImport(Lib)] public static partial IntPtr virDomainGetXMLDesc(DomainHandle dom, uint flags);   // char*: free()
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial DomainHandle virDomainDefineXML(ConnectionHandle conn, string xml);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial DomainHandle virDomainCreateXML(ConnectionHandle conn, string xml, uint flags);
    [LibraryImport(Lib)] public static partial int virDomainCreateWithFlags(DomainHandle dom, uint flags);
    [LibraryImport(Lib)] public static partial int virDomainDestroy(DomainHandle dom);
    [LibraryImport(Lib)] public static partial int virDomainUndefineFlags(DomainHandle dom, uint flags);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int virDomainAttachDeviceFlags(DomainHandle dom, string xml, uint flags);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int virDomainDetachDeviceFlags(DomainHandle dom, string xml, uint flags);
    [LibraryImport(Lib)] public static partial int virDomainFree(IntPtr dom);

    [LibraryImport(Lib)] public static partial VirError* virGetLastError();   // thread-local; do not free (REFERENCE §5.5)
    [LibraryImport(Lib)] public static partial void virResetLastError();
    [LibraryImport(Lib)] public static partial void virSetErrorFunc(IntPtr userData, delegate* unmanaged[Cdecl]<IntPtr, IntPtr, void> handler);

    /// <summary>Installed as the global error handler: a NULL handler would print every error on stderr (REFERENCE §5.5).</summary>
    [UnmanagedCallersOnly(CallConvs = new[] { typeof(CallConvCdecl) })]
    public static void SilentErrorHandler(IntPtr userData, IntPtr error) { }

    /// <summary>Copies a malloc'ed <c>char*</c> libvirt returned and frees it (REFERENCE §5.3).</summary>
    public static string? TakeString(IntPtr p)
    {
        if (p == IntPtr.Zero) return null;
        try { return Marshal.PtrToStringUTF8(p); }
        finally { NativeMemory.Free((void*)p); }
    }
}

/// <summary>A <c>virConnectPtr</c>; closing drops libvirt's reference (domains still alive keep it open until freed).</summary>
internal sealed class ConnectionHandle : SafeHandle
{
    public ConnectionHandle() : base(IntPtr.Zero, ownsHandle: true) { }
    public override bool IsInvalid => handle == IntPtr.Zero;
    protected override bool ReleaseHandle() => Virt.virConnectClose(handle) >= 0;
}

/// <summary>A <c>virDomainPtr</c>; every one libvirt hands out (lookup, define, list element) must be freed once.</summary>
internal sealed class DomainHandle : SafeHandle
{
    public DomainHandle() : base(IntPtr.Zero, ownsHandle: true) { }
    public DomainHandle(IntPtr existing) : this() => SetHandle(existing);
    public override bool IsInvalid => handle == IntPtr.Zero;
    protected override bool ReleaseHandle() => Virt.virDomainFree(handle) == 0;
}
