namespace Gallium.Pci;

/// <summary>What kind of failure this is. Names match System.Management.Automation.ErrorCategory so the cmdlet
/// layer maps one to the other by name; the core stays free of any PowerShell reference.</summary>
public enum ErrorKind
{
    NotSpecified,
    InvalidArgument,
    InvalidOperation,
    ObjectNotFound,
    ResourceBusy,
    ResourceUnavailable,
    PermissionDenied,
    NotEnabled,
    NotInstalled,
    ConnectionError,
    OperationTimeout,
    WriteError,
    ReadError,
    InvalidData,
    DeviceError,
    LimitsExceeded,
    OperationStopped,
}

/// <summary>Every failure the core reports: a stable error id (PascalCase Noun+Condition), a kind, and the target it concerns.</summary>
public class GalliumException : Exception
{
    public GalliumException(string errorId, ErrorKind kind, string message, object? target = null, Exception? inner = null)
        : base(message, inner)
    {
        ErrorId = errorId;
        Kind = kind;
        Target = target;
    }

    /// <summary>Stable identifier, e.g. <c>PciDeviceNotFound</c>; becomes the ErrorRecord's FullyQualifiedErrorId prefix.</summary>
    public string ErrorId { get; }
    public ErrorKind Kind { get; }
    /// <summary>The device, group or VM the error is about (never the cmdlet).</summary>
    public object? Target { get; }
    /// <summary>What the user can do about it, when there is something to say.</summary>
    public string? RecommendedAction { get; init; }
    /// <summary>True when the failure is about the host, not the item at hand (not root, IOMMU off, libvirt unreachable,
    /// the host lock): the command stops (a terminating error) instead of going on with its next item.</summary>
    public virtual bool IsHostLevel => false;
}

public sealed class PciAddressInvalidException(string? text)
    : GalliumException("PciAddressInvalid", ErrorKind.InvalidArgument,
        $"'{text}' is not a PCI address. Use domain:bus:device.function in hex, e.g. 0000:01:00.0 (or 01:00.0).", text);

public sealed class PciDeviceNotFoundException(PciAddress address)
    : GalliumException("PciDeviceNotFound", ErrorKind.ObjectNotFound, $"No PCI device {address} on this host.", address.ToString())
{
    public PciAddress Address { get; } = address;
}

/// <summary>A write to a kernel attribute failed; carries the errno the kernel returned (REFERENCE §3.6, §4.6).</summary>
public sealed class KernelWriteException : GalliumException
{
    public KernelWriteException(string path, string value, int errno, string message, Exception? inner = null)
        : base("KernelWriteFailed", ErrorKind.WriteError, message, path, inner)
    {
        Path = path; Value = value; Errno = errno;
    }

    public string Path { get; }
    public string Value { get; }
    /// <summary>The raw errno (19 ENODEV, 16 EBUSY, 22 EINVAL, ...); 110 ETIMEDOUT for a write that did not return in time.</summary>
    public int Errno { get; }
    public string ErrnoName => Errnos.Name(Errno);
}

public static class Errnos
{
    public const int EPERM = 1, ENOENT = 2, EIO = 5, ENXIO = 6, EACCES = 13, EBUSY = 16, EEXIST = 17, ENODEV = 19,
        EINVAL = 22, ENOSPC = 28, ERANGE = 34, ETIMEDOUT = 110;

    public static string Name(int errno) => errno switch
    {
        EPERM => "EPERM", ENOENT => "ENOENT", EIO => "EIO", ENXIO => "ENXIO", EACCES => "EACCES", EBUSY => "EBUSY",
        EEXIST => "EEXIST", ENODEV => "ENODEV", EINVAL => "EINVAL", ENOSPC => "ENOSPC", ERANGE => "ERANGE",
        ETIMEDOUT => "ETIMEDOUT", _ => $"errno {errno}",
    };
}

/// <summary>A wildcard pattern given to a parameter (-Address, -Class, -Driver, -VmName) does not parse, e.g. an unclosed
/// '['. The id names the parameter: <c>AddressPatternInvalid</c>, <c>ClassPatternInvalid</c>, <c>DriverPatternInvalid</c>,
/// <c>VmNamePatternInvalid</c>.</summary>
public sealed class PatternInvalidException : GalliumException
{
    public PatternInvalidException(string parameter, string pattern, string reason)
        : base($"{parameter}PatternInvalid", ErrorKind.InvalidArgument,
            $"-{parameter} '{pattern}' is not a valid wildcard pattern: {reason}", pattern)
    {
        Parameter = parameter;
        Pattern = pattern;
        RecommendedAction = "Use * and ? as wildcards, close every '[' with ']', and write a literal [ or ] as `[ or `].";
    }

    public string Parameter { get; }
    public string Pattern { get; }
}
