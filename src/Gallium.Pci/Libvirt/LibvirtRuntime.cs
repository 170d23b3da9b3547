using System.Runtime.InteropServices;

namespace Gallium.Pci.Libvirt;

/// <summary>Loads libvirt on first use, once per process, and silences its stderr printing (REFERENCE §5.5).
/// Nothing touches libvirt before a connection is opened, so the rest of the module works without libvirt0.</summary>
internal static class LibvirtRuntime
{
    // PublicationOnly: a failure is not cached, so installing libvirt0 later in the same session is picked up.
    private static readonly Lazy<bool> Ready = new(() => Initialize(Virt.Lib), LazyThreadSafetyMode.PublicationOnly);

    public static void EnsureReady() => _ = Ready.Value;

    /// <summary>Probes <paramref name="library"/> with dlopen before any P/Invoke can throw DllNotFoundException.</summary>
    internal static unsafe bool Initialize(string library)
    {
        if (!NativeLibrary.TryLoad(library, out _))
        {
            throw new LibvirtNotInstalledException(library, "dlopen failed");
        }
        // virInitialize before installing the handler so the first connection attempt is covered too (REFERENCE §5.5).
        if (Virt.virInitialize() < 0)
        {
            throw new LibvirtNotInstalledException(library, "virInitialize failed: " + LastError().Message);
        }
        Virt.virSetErrorFunc(IntPtr.Zero, &Virt.SilentErrorHandler);
        return true;
    }

    /// <summary>For the stderr test's control case only: true restores libvirt's default printing, false silences it again.</summary>
    internal static unsafe void SetDefaultErrorPrinting(bool print)
    {
        EnsureReady();
        Virt.virSetErrorFunc(IntPtr.Zero, print ? null : &Virt.SilentErrorHandler);
    }

    /// <summary>The calling thread's last libvirt error, then cleared; call it right after the failed call (REFERENCE §5.5).</summary>
    public static unsafe LibvirtError LastError()
    {
        Virt.VirError* e = Virt.virGetLastError();
        if (e == null)
        {
            return new LibvirtError(LibvirtErrorCode.InternalError, LibvirtErrorDomain.None, "libvirt reported a failure without an error");
        }
        var error = new LibvirtError((LibvirtErrorCode)e->Code, (LibvirtErrorDomain)e->Domain,
            Marshal.PtrToStringUTF8(e->Message) ?? "(no message)");
        Virt.virResetLastError();
        return error;
    }
}
