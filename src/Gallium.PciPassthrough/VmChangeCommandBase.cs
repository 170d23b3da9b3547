using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Assignments;
using Gallium.Pci.Libvirt;

namespace Gallium.PciPassthrough;

/// <summary>Shared shell of Add/Remove/Repair-GalliumVmPciDevice: one plan per VM per command (every device the command
/// names for that VM, sized together), one -WhatIf line per edit and one -Confirm prompt per VM, then the core's runner,
/// which plans again under the host lock before it edits.</summary>
public abstract class VmChangeCommandBase : LibvirtCmdlet
{
    private ILibvirt? _libvirt;
    private VmDevicePlanner? _planner;

    /// <summary>"Add PCI device to VM" etc.: the ShouldProcess action.</summary>
    protected abstract string Action { get; }

    protected ILibvirt Libvirt => _libvirt ??= OpenLibvirt();

    protected VmDevicePlanner Planner => _planner ??= new VmDevicePlanner(Libvirt, NewInventory(), RequireHostCpu);

    // VM name -> addresses, in the order they came: planned per VM at the end, so a pipeline of eight GPUs is one plan.
    private readonly List<(string VmName, List<PciAddress> Addresses)> _requests = [];

    /// <summary>What the pipeline asked for, per VM, in the order the VMs first came.</summary>
    protected IReadOnlyList<(string VmName, List<PciAddress> Addresses)> Requests => _requests;

    /// <summary>Gathers addresses for one VM (checked: a name with a control character is VmNameInvalid and gathers nothing).</summary>
    protected void Gather(string vmName, IEnumerable<PciAddress> addresses)
    {
        if (!ValidVmName(vmName)) return;
        var list = addresses.ToList();
        if (list.Count == 0) return;
        var request = _requests.FirstOrDefault(r => r.VmName == vmName);
        if (request.Addresses is null) _requests.Add((vmName, list));
        else request.Addresses.AddRange(list);
    }

    /// <summary>Plans, reports what is left out, asks, runs. Returns the change as made (or, when there was nothing to do, as
    /// planned); null when the user declined or -WhatIf only reported it.</summary>
    protected VmDeviceChange? Change(VmDeviceRequest request, Func<VmDeviceChange, bool> confirm)
    {
        var change = Planner.Plan(request);
        foreach (var refusal in change.Refusals) WriteError(refusal);
        change.ThrowIfRefused();   // the whole set, -WhatIf or not: reported by ForEachVm, nothing is done
        foreach (var warning in change.Warnings) WriteWarning($"{warning.Device}: {warning.Message}");
        if (change.IsNoOp)
        {
            WriteVerbose(NoOpMessage(change));
            return change;
        }
        if (!confirm(change)) return null;
        var runner = new VmDeviceRunner(Libvirt, Planner, HostContext, RequireHostCpu);
        VmDeviceChange done;
        try { done = runner.Run(change, new Interruption(WriteVerbose, StopToken, WriteWarning)); }
        catch (VmChangeInterruptedException e) { EndInterrupted(e); throw; }
        // What only the check under the lock found (assigned or disabled meanwhile) is reported too.
        foreach (var refusal in done.Refusals.Where(r => !change.Refusals.Any(c => c.ErrorId == r.ErrorId && Equals(c.Target, r.Target))))
            WriteError(refusal);
        return done;
    }

    protected virtual string NoOpMessage(VmDeviceChange change) => $"VM '{change.VmName}': nothing to change.";

    /// <summary>Per-VM failures are reported and the next VM goes on; host-level ones (libvirt unreachable, the host lock) stop.</summary>
    protected void ForEachVm<T>(IEnumerable<T> items, Action<T> act)
    {
        foreach (var item in items)
        {
            try { act(item); }
            catch (GalliumException e) when (e.IsHostLevel) { ThrowTerminatingError(e); }
            catch (GalliumException e) { WriteError(e); }
        }
    }

    protected override void EndProcessing() => _libvirt?.Dispose();
}

/// <summary>-WhatIf: one line per edit and per MMIO change (with the BAR sizes that call for it); -Confirm: one prompt per VM,
/// listing them.</summary>
internal static class VmShouldProcess
{
    public static bool Ask(PSCmdlet cmdlet, VmDeviceChange change, string action)
    {
        var lines = change.Lines;
        string warning = $"{action} '{change.VmName}'?{Environment.NewLine}" + string.Join(Environment.NewLine, lines.Select(l => "  " + l));
        if (cmdlet.ShouldProcess($"{action}: {lines[0]}", warning, action, out ShouldProcessReason reason)) return true;
        if (reason == ShouldProcessReason.WhatIf)
            foreach (string line in lines.Skip(1)) cmdlet.ShouldProcess($"{action}: {line}", warning, action);
        return false;
    }
}
