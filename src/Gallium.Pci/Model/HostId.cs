namespace Gallium.Pci;

/// <summary>The host an object was read on, carried by devices, groups and assignments so that one exported on host A
/// (CliXml, remoting) is refused when it reaches a command on host B instead of acting on whatever B has at that address.</summary>
/// <param name="Name">The host name (<c>/proc/sys/kernel/hostname</c>): what the user is told to run the command on.</param>
/// <param name="MachineId">systemd's <c>/etc/machine-id</c> (32 hex digits), stable across reboots and renames; null when the
/// host has none. Two objects are from the same host when both ids are known and equal.</param>
public sealed record HostId(string Name, string? MachineId)
{
    /// <summary>Both machine ids are known and differ: certainly another host. Unknown ids never count as a mismatch.</summary>
    public bool IsOtherThan(HostId? other) =>
        other?.MachineId is { } theirs && MachineId is { } mine && !string.Equals(mine, theirs, StringComparison.OrdinalIgnoreCase);

    public override string ToString() => Name;
}
