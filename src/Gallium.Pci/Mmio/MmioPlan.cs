namespace Gallium.Pci.Mmio;

public enum MmioPlanOutcome
{
    /// <summary>The window the guest gets already holds the BARs.</summary>
    NotNeeded,
    /// <summary><see cref="MmioPlan.Changes"/> make it hold them.</summary>
    FixNeeded,
    /// <summary>Nothing expressible in the domain XML makes it hold them; <see cref="MmioPlan.Refusal"/> says what to change.</summary>
    Refused,
}

public enum MmioChangeKind
{
    /// <summary>Set <c>&lt;cpu&gt;&lt;maxphysaddr …/&gt;</c> (libvirt ≥ 8.7, REFERENCE §6.3).</summary>
    MaxPhysAddr,
    /// <summary>Force OVMF's aperture with <c>&lt;qemu:commandline&gt; -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=MiB</c> (REFERENCE §6.3).</summary>
    OvmfAperture,
}

/// <summary>One edit of the domain definition.</summary>
public sealed record MmioChange(MmioChangeKind Kind, string Description)
{
    /// <summary>For <see cref="MmioChangeKind.MaxPhysAddr"/>: the element to set.</summary>
    public MaxPhysAddr? MaxPhysAddr { get; init; }
    /// <summary>For <see cref="MmioChangeKind.OvmfAperture"/>: the <c>X-PciMmio64Mb</c> value in MiB.</summary>
    public ulong? ApertureMiB { get; init; }

    public override string ToString() => Description;
}

/// <summary>What a VM needs for its large BARs, what it gets now, and the smallest change that makes the two agree.</summary>
public sealed record MmioPlan
{
    public required string VmName { get; init; }
    public required MmioPlanOutcome Outcome { get; init; }
    /// <summary>The BARs that drove the size, largest first.</summary>
    public IReadOnlyList<MmioBarDemand> Bars { get; init; } = [];
    /// <summary>The power-of-two aperture (≥ 1 GiB) that holds the BARs, hot-plug padding and emulated devices; 0 when none.</summary>
    public ulong NeededBytes { get; init; }
    public int HostAddressBits { get; init; }
    /// <summary>The guest CPU's physical address bits as the definition stands.</summary>
    public int GuestAddressBits { get; init; }
    /// <summary>The guest CPU's bits after the fix (equal to <see cref="GuestAddressBits"/> when the fix leaves the CPU alone).</summary>
    public int FixedGuestAddressBits { get; init; }
    /// <summary>The window OVMF opens as the definition stands; null for SeaBIOS.</summary>
    public MmioWindow? CurrentWindow { get; init; }
    /// <summary>The window after the fix; null unless <see cref="Outcome"/> is FixNeeded.</summary>
    public MmioWindow? FixedWindow { get; init; }
    public IReadOnlyList<MmioChange> Changes { get; init; } = [];
    /// <summary>One line for -WhatIf / -Verbose: need, current window, and the fix or the refusal.</summary>
    public required string Reason { get; init; }
    /// <summary>Set when <see cref="Outcome"/> is Refused: the error to report, with what to change.</summary>
    public GalliumException? Refusal { get; init; }

    public bool IsFixNeeded => Outcome == MmioPlanOutcome.FixNeeded;

    public void ThrowIfRefused()
    {
        if (Refusal is not null) throw Refusal;
    }

    public override string ToString() => Reason;
}
