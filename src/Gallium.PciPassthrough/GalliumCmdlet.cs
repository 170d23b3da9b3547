using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Host;

namespace Gallium.PciPassthrough;

/// <summary>Base of every Gallium cmdlet: resolves the host (kernel seams) once per invocation and turns the core's
/// typed exceptions into ErrorRecords with stable ids, accurate categories and the device or VM as target.</summary>
public abstract class GalliumCmdlet : PSCmdlet
{
    /// <summary>Session variable that, when it holds a <see cref="Pci.Host.HostContext"/>, replaces the real host: how the
    /// Pester suites (ours and admins') point the cmdlets at a simulated kernel. Documented in about_Gallium_PciPassthrough.</summary>
    public const string HostContextVariable = "GalliumHostContext";

    private HostContext? _host;

    protected HostContext HostContext => _host ??= ResolveHostContext();

    private HostContext ResolveHostContext()
    {
        object? value = SessionState.PSVariable.GetValue(HostContextVariable);
        if (value is PSObject pso) value = pso.BaseObject;
        return value as HostContext ?? HostContext.FromEnvironment();
    }

    internal static ErrorRecord ToErrorRecord(GalliumException e)
    {
        var category = Enum.TryParse<ErrorCategory>(e.Kind.ToString(), out var c) ? c : ErrorCategory.NotSpecified;
        var record = new ErrorRecord(e, e.ErrorId, category, e.Target);
        if (e.RecommendedAction is { } action)
            record.ErrorDetails = new ErrorDetails(e.Message) { RecommendedAction = action };
        return record;
    }

    /// <summary>Per-item failure: report and go on with the next item.</summary>
    protected void WriteError(GalliumException e) => WriteError(ToErrorRecord(e));

    /// <summary>A missing prerequisite (not root, IOMMU off): stop the whole command.</summary>
    protected void ThrowTerminatingError(GalliumException e) => ThrowTerminatingError(ToErrorRecord(e));

    /// <summary>Bad parameter input reported as a per-item error, like a PciAddressInvalid for one of several addresses.</summary>
    protected void WriteArgumentError(string errorId, string message, object? target) =>
        WriteError(new ErrorRecord(new ArgumentException(message), errorId, ErrorCategory.InvalidArgument, target));
}
