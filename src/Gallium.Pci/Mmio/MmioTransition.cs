namespace Gallium.Pci.Mmio;

/// <summary>How a change moves the VM's large-BAR fix.</summary>
public enum MmioFixChange
{
    /// <summary>The fix in the definition is already the one the VM's devices call for (or none is needed and none is there).</summary>
    None,
    /// <summary>No Gallium fix yet; one is needed.</summary>
    Apply,
    /// <summary>A Gallium fix is there but another one is right now (a larger window for more devices, a smaller one for fewer).</summary>
    Change,
    /// <summary>A Gallium fix is there and no device left needs it: take out what Gallium put in, nothing else.</summary>
    Remove,
}

/// <summary>The fix a VM's definition should carry for the devices it will hold, and the definition that carries it. Always
/// sized from the definition as if Gallium had never touched it (its fix taken out) plus every device the VM will hold, so a
/// fix never justifies itself: Remove of a small GPU keeps the large one's fix, and shrinks it where a smaller window does.</summary>
/// <param name="Plan">The sizing; null when none of the devices has a 64-bit prefetchable BAR.</param>
/// <param name="TargetXml">The definition as it will be: the change's device edits made and the fix in its new state (the
/// current fix kept when <paramref name="Change"/> is None).</param>
public sealed record MmioTransition(MmioPlan? Plan, MmioFixChange Change, string TargetXml)
{
    /// <summary>Computes the transition for a definition as it is now. <paramref name="project"/> turns a definition into the
    /// one the change's device edits leave (the hostdevs it adds or removes; root ports count for OVMF's padding).</summary>
    /// <exception cref="GalliumException">The plan's refusal (MmioWindowBeyondHostAddressBits, ...) when nothing fits.</exception>
    public static MmioTransition Compute(string currentXml, Func<string, string> project, IReadOnlyCollection<PciDevice> devicesAfter, Func<HostCpu> hostCpu)
    {
        ArgumentNullException.ThrowIfNull(project);
        ArgumentNullException.ThrowIfNull(devicesAfter);
        string unfixed = project(MmioDomainXml.RemoveFix(currentXml));
        MmioPlan? plan = null;
        string target = unfixed;
        if (devicesAfter.Any(d => d.Bar64Size > 0))
        {
            plan = MmioPlanner.PlanForDomain(unfixed, hostCpu(), devicesAfter);
            plan.ThrowIfRefused();
            if (plan.IsFixNeeded) target = MmioDomainXml.ApplyFix(unfixed, plan);
        }
        if (MmioDomainXml.FixFingerprint(target) == MmioDomainXml.FixFingerprint(currentXml))
            return new MmioTransition(plan, MmioFixChange.None, project(currentXml));
        bool hadFix = MmioDomainXml.HasFix(currentXml);
        var change = !hadFix ? MmioFixChange.Apply : MmioDomainXml.HasFix(target) ? MmioFixChange.Change : MmioFixChange.Remove;
        return new MmioTransition(plan, change, target);
    }

    /// <summary>The -WhatIf / -Verbose line; null when nothing changes.</summary>
    public string? Describe(string vmName) => Change switch
    {
        MmioFixChange.Apply => $"set the 64-bit MMIO window of VM '{vmName}': {Plan?.Reason}",
        MmioFixChange.Change => $"change the 64-bit MMIO window settings Gallium made in VM '{vmName}': {Plan?.Reason}",
        MmioFixChange.Remove => $"remove the 64-bit MMIO window settings Gallium added to VM '{vmName}' (no device it keeps needs them)",
        _ => null,
    };
}
