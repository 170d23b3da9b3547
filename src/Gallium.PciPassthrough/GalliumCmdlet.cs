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
    private readonly CancellationTokenSource _stop = new();

    /// <summary>Cancelled when the user stops the command (Ctrl+C, PowerShell.Stop()): runners finish or roll back their
    /// current change at the next step boundary.</summary>
    protected CancellationToken StopToken => _stop.Token;

    protected override void StopProcessing()
    {
        _stop.Cancel();
        base.StopProcessing();
    }

    /// <summary>A change was interrupted and has been rolled back (or finished): say so on every route that still
    /// reaches the user while the pipeline stops (the warning stream, else the host's UI directly), then let the stop win.</summary>
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    protected void EndInterrupted(ChangeInterruptedException e)
    {
        bool told = false;
        try { WriteWarning(e.Message); told = true; }
        catch (Exception) { /* the pipeline is stopping: the host's UI below still reaches the user */ }
        if (!told)
        {
            try { Host.UI.WriteWarningLine(e.Message); }
            catch (Exception) { /* no UI at all (a runspace without a host): the cause below still ends the command */ }
        }
        System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.Cause);
    }

    protected HostContext HostContext => _host ??= ResolveHostContext();

    /// <summary>-Uri as given, else the host's libvirt (LIBVIRT_DEFAULT_URI, qemu:///system, or a simulated host's own).</summary>
    protected string ResolveLibvirtUri(string? uri) => uri is null ? HostContext.Libvirt.DefaultUri : Pci.Libvirt.LibvirtUri.Resolve(uri);

    /// <summary>An inventory of the resolved host, with the process-wide parsed pci.ids.</summary>
    protected DeviceInventory NewInventory() => new(HostContext, NameDatabases.For(HostContext.PciIdsPath));

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

    /// <summary>The literal addresses the user typed; each malformed one is reported (PciAddressInvalid) and skipped.</summary>
    protected IEnumerable<PciAddress> ParseAddresses(IEnumerable<string> texts)
    {
        foreach (string text in texts)
        {
            if (PciAddress.TryParse(text.Trim(), out var address)) yield return address;
            else WriteError(new PciAddressInvalidException(text));
        }
    }

    /// <summary>One warning per caveat (DESIGN.md "Caveats"), information records for the informational ones: written before
    /// ShouldProcess, so -WhatIf shows them and a runbook's log says why a VM may misbehave.</summary>
    protected void WriteCaveats(IEnumerable<PassthroughCaveat> caveats)
    {
        foreach (var caveat in caveats)
        {
            string text = $"[{caveat.Kind}] {caveat} Remedy: {caveat.Remedy}";
            if (caveat.Severity == CaveatSeverity.Warning) { WriteWarning(text); continue; }
            WriteVerbose(text);
            WriteInformation(new InformationRecord(caveat, MyInvocation.MyCommand.Name) { Tags = { "Gallium", "Caveat", caveat.Kind.ToString() } });
        }
    }

    /// <summary>Per-item failure: report and go on with the next item.</summary>
    protected void WriteError(GalliumException e) => WriteError(ToErrorRecord(e));

    /// <summary>A missing prerequisite (not root, IOMMU off): stop the whole command.</summary>
    protected void ThrowTerminatingError(GalliumException e) => ThrowTerminatingError(ToErrorRecord(e));

    /// <summary>Bad parameter input reported as a per-item error, like a PciAddressInvalid for one of several addresses.</summary>
    protected void WriteArgumentError(string errorId, string message, object? target) =>
        WriteError(new ErrorRecord(new ArgumentException(message), errorId, ErrorCategory.InvalidArgument, target));
}

/// <summary>pci.ids parsed once per process and path: it is immutable once loaded, and re-parsing it on every cmdlet call
/// would cost ~15 ms each time in runbooks that call the cmdlets in loops.</summary>
internal static class NameDatabases
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, PciIds> Loaded = new(StringComparer.Ordinal);

    public static PciIds For(string? path) => Loaded.GetOrAdd(path ?? "", p => new PciIds(p.Length == 0 ? null : p));
}
