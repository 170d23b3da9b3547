namespace Gallium.Pci.Libvirt;

/// <summary>libvirt's <c>virErrorNumber</c> (selection, REFERENCE §5.4); other values still round-trip as numbers.</summary>
public enum LibvirtErrorCode
{
    Ok = 0,
    InternalError = 1,
    NoMemory = 2,
    NoSupport = 3,
    NoConnect = 5,
    InvalidConn = 6,
    InvalidDomain = 7,
    InvalidArg = 8,
    OperationFailed = 9,
    XmlError = 27,
    DomExist = 28,
    OperationDenied = 29,
    /// <summary>VIR_ERR_XML_DETAIL: the XML is malformed, with libxml2's detail.</summary>
    XmlDetail = 35,
    SystemError = 38,
    Rpc = 39,
    NoDomain = 42,
    AuthFailed = 45,
    InvalidNodeDevice = 52,
    NoNodeDevice = 53,
    OperationInvalid = 55,
    ConfigUnsupported = 67,
    OperationTimeout = 68,
    ArgumentUnsupported = 74,
    OperationUnsupported = 84,
    ResourceBusy = 87,
    AccessDenied = 88,
    XmlInvalidSchema = 92,
    AuthUnavailable = 94,
    DeviceMissing = 99,
}

/// <summary>libvirt's <c>virErrorDomain</c>: which part of libvirt raised the error (selection, REFERENCE §5.4).</summary>
public enum LibvirtErrorDomain
{
    None = 0,
    Dom = 6,
    Rpc = 7,
    Conf = 9,
    Qemu = 10,
    Remote = 13,
    Domain = 20,
    NodeDev = 22,
}

/// <summary>One libvirt error as <c>virGetLastError</c> reported it right after the failed call (REFERENCE §5.5).</summary>
public sealed record LibvirtError(LibvirtErrorCode Code, LibvirtErrorDomain Domain, string Message)
{
    public override string ToString() => $"{Message} (libvirt error {(int)Code} {Code}, domain {(int)Domain})";
}

/// <summary>A failure reported by libvirt; carries libvirt's code, domain and message.</summary>
public abstract class LibvirtException : GalliumException
{
    protected LibvirtException(string errorId, ErrorKind kind, string message, object? target, LibvirtError? error)
        : base(errorId, kind, message, target)
    {
        Error = error;
    }

    /// <summary>libvirt's own report; null when libvirt was never reached (library missing).</summary>
    public LibvirtError? Error { get; }
    public LibvirtErrorCode Code => Error?.Code ?? LibvirtErrorCode.Ok;
    public LibvirtErrorDomain ErrorDomain => Error?.Domain ?? LibvirtErrorDomain.None;
    public string? LibvirtMessage => Error?.Message;
}

/// <summary>libvirt0 (<c>libvirt.so.0</c>) cannot be loaded on this machine.</summary>
public sealed class LibvirtNotInstalledException(string library, string? detail = null)
    : LibvirtException("LibvirtNotInstalled", ErrorKind.NotInstalled,
        $"The libvirt client library '{library}' could not be loaded{(detail is null ? "" : $" ({detail})")}. " +
        "Install it (Debian/Ubuntu: apt-get install libvirt0; Fedora/RHEL: dnf install libvirt-libs).", library, null)
{
    public string Library { get; } = library;
    public override bool IsHostLevel => true;
}

/// <summary>Opening the connection failed: daemon down, socket missing, authentication refused, bad URI.</summary>
public sealed class LibvirtConnectionFailedException(string uri, LibvirtError error)
    : LibvirtException("LibvirtConnectionFailed", KindOf(error),
        $"Cannot connect to libvirt at '{uri}': {error.Message}. {Hint(error)}", uri, error)
{
    public string Uri { get; } = uri;
    public override bool IsHostLevel => true;

    private static ErrorKind KindOf(LibvirtError error) =>
        LibvirtErrorMap.IsPermission(error.Code) ? ErrorKind.PermissionDenied : ErrorKind.ConnectionError;

    private static string Hint(LibvirtError error) => LibvirtErrorMap.IsPermission(error.Code)
        ? "Run as root or as a member of the group that owns the libvirt socket."
        : "Is libvirtd running (systemctl start libvirtd, or virtqemud) and is the URI right?";
}

/// <summary>No libvirt domain (VM) with this name (libvirt code 42 VIR_ERR_NO_DOMAIN).</summary>
public sealed class VmNotFoundException(string vmName, LibvirtError? error)
    : LibvirtException("VmNotFound", ErrorKind.ObjectNotFound, $"No VM named '{vmName}' is defined in libvirt.", vmName, error)
{
    public string VmName { get; } = vmName;
}

/// <summary>-Uri (or LIBVIRT_DEFAULT_URI) is not a libvirt URI at all; never reported as another host's libvirt.</summary>
public sealed class LibvirtUriInvalidException(string uri, string why)
    : GalliumException("LibvirtUriInvalid", ErrorKind.InvalidArgument,
        $"'{Printable(uri)}' is not a libvirt connection URI: {why}.", Printable(uri))
{
    public string Uri { get; } = uri;
    public override bool IsHostLevel => true;
    /// <summary>The URI with control characters shown as \uXXXX, so a message never carries a raw NUL or escape.</summary>
    internal static string Printable(string text) =>
        string.Concat(text.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));
}

/// <summary>A VM name libvirt would not see as typed: a NUL ends a C string (the name would be cut short and name another
/// VM), and other control characters are never part of a domain name.</summary>
public sealed class VmNameInvalidException(string vmName)
    : GalliumException("VmNameInvalid", ErrorKind.InvalidArgument,
        $"'{LibvirtUriInvalidException.Printable(vmName)}' is not a VM name: it contains a control character (a NUL would cut it short at the C boundary).",
        LibvirtUriInvalidException.Printable(vmName))
{
    /// <summary>Throws unless <paramref name="vmName"/> is non-empty and free of control characters.</summary>
    public static void ThrowIfInvalid(string vmName)
    {
        ArgumentNullException.ThrowIfNull(vmName);
        if (vmName.Length == 0 || vmName.Any(char.IsControl)) throw new VmNameInvalidException(vmName);
    }
}

/// <summary>libvirt refused or failed an operation on a VM (attach, detach, define, start, ...).</summary>
public sealed class LibvirtOperationFailedException(string operation, object? target, LibvirtError error)
    : LibvirtException("LibvirtOperationFailed", LibvirtErrorMap.KindOf(error.Code),
        $"libvirt could not {operation}: {error.Message}", target, error)
{
    /// <summary>What was attempted, in words ("attach a device to VM 'web1'").</summary>
    public string Operation { get; } = operation;
}

/// <summary>libvirt error codes to the module's error kinds.</summary>
internal static class LibvirtErrorMap
{
    public static bool IsPermission(LibvirtErrorCode code) => code is LibvirtErrorCode.AuthFailed or LibvirtErrorCode.AccessDenied
        or LibvirtErrorCode.AuthUnavailable or LibvirtErrorCode.OperationDenied;

    public static ErrorKind KindOf(LibvirtErrorCode code) => code switch
    {
        _ when IsPermission(code) => ErrorKind.PermissionDenied,
        LibvirtErrorCode.OperationInvalid or LibvirtErrorCode.DomExist or LibvirtErrorCode.NoSupport
            or LibvirtErrorCode.OperationUnsupported => ErrorKind.InvalidOperation,
        LibvirtErrorCode.DeviceMissing or LibvirtErrorCode.NoDomain or LibvirtErrorCode.NoNodeDevice => ErrorKind.ObjectNotFound,
        LibvirtErrorCode.InvalidArg or LibvirtErrorCode.XmlError or LibvirtErrorCode.XmlDetail or LibvirtErrorCode.XmlInvalidSchema
            or LibvirtErrorCode.ArgumentUnsupported or LibvirtErrorCode.ConfigUnsupported => ErrorKind.InvalidArgument,
        LibvirtErrorCode.ResourceBusy => ErrorKind.ResourceBusy,
        LibvirtErrorCode.OperationTimeout => ErrorKind.OperationTimeout,
        LibvirtErrorCode.NoConnect or LibvirtErrorCode.InvalidConn or LibvirtErrorCode.Rpc => ErrorKind.ConnectionError,
        _ => ErrorKind.NotSpecified,
    };
}
