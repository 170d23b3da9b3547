using System.Text;

namespace Gallium.Pci.Testing;

/// <summary>One write(2) the simulated kernel received, in order.</summary>
/// <param name="Path">The path as the caller wrote it (relative to the sysfs root), e.g. <c>bus/pci/devices/0000:05:00.0/driver/unbind</c>.</param>
/// <param name="ResolvedPath">The same path with links resolved, e.g. <c>bus/pci/drivers/e1000e/unbind</c>; equals Path when it did not resolve.</param>
/// <param name="Value">The bytes written, as text (newlines kept).</param>
/// <param name="Errno">0 when the write succeeded, else the errno the kernel returned (19 ENODEV, 16 EBUSY, 110 ETIMEDOUT, ...).</param>
public sealed record KernelWrite(string Path, string ResolvedPath, string Value, int Errno)
{
    public bool Succeeded => Errno == 0;
    public override string ToString() => $"{Path} <- '{Value.Replace("\n", "\\n")}'{(Errno == 0 ? "" : " => " + Errnos.Name(Errno))}";
}

/// <summary>Driver and override of one device at the moment of a <see cref="KernelSnapshot"/>.</summary>
public sealed record DeviceSnapshot(string Address, string? Driver, string? DriverOverride)
{
    public override string ToString() => $"{Address} driver={Driver ?? "-"} override={DriverOverride ?? "(null)"}";
}

/// <summary>The passthrough-relevant state of the whole simulated host: every device's driver and override, and the
/// <c>/dev/vfio</c> nodes. Value-equal, so "ends exactly as it began" is <c>Assert.Equal(before, after)</c> in C# and
/// <c>$before.Equals($after)</c> in PowerShell; <see cref="Differences"/> says what changed.</summary>
public sealed class KernelSnapshot : IEquatable<KernelSnapshot>
{
    public KernelSnapshot(IReadOnlyList<DeviceSnapshot> devices, IReadOnlyList<string> vfioNodes)
    {
        Devices = devices;
        VfioNodes = vfioNodes;
    }

    /// <summary>Every PCI device, ordered by address.</summary>
    public IReadOnlyList<DeviceSnapshot> Devices { get; }
    /// <summary>Names under <c>/dev/vfio</c> (<c>vfio</c> and the group numbers), ordered.</summary>
    public IReadOnlyList<string> VfioNodes { get; }

    public DeviceSnapshot? this[string address] => Devices.FirstOrDefault(d => d.Address == address);

    public bool Equals(KernelSnapshot? other) =>
        other is not null && Devices.SequenceEqual(other.Devices) && VfioNodes.SequenceEqual(other.VfioNodes, StringComparer.Ordinal);

    public override bool Equals(object? obj) => Equals(obj as KernelSnapshot);

    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var d in Devices) h.Add(d);
        foreach (var n in VfioNodes) h.Add(n, StringComparer.Ordinal);
        return h.ToHashCode();
    }

    public static bool operator ==(KernelSnapshot? a, KernelSnapshot? b) => a is null ? b is null : a.Equals(b);
    public static bool operator !=(KernelSnapshot? a, KernelSnapshot? b) => !(a == b);

    /// <summary>Human-readable differences from <paramref name="other"/> (empty when equal), for assertion messages.</summary>
    public IReadOnlyList<string> Differences(KernelSnapshot other)
    {
        var result = new List<string>();
        var mine = Devices.ToDictionary(d => d.Address, StringComparer.Ordinal);
        var theirs = other.Devices.ToDictionary(d => d.Address, StringComparer.Ordinal);
        foreach (var d in Devices)
        {
            if (!theirs.TryGetValue(d.Address, out var o)) result.Add($"{d.Address}: only before");
            else if (o != d) result.Add($"{d.Address}: driver {d.Driver ?? "-"} -> {o.Driver ?? "-"}, override {d.DriverOverride ?? "(null)"} -> {o.DriverOverride ?? "(null)"}");
        }
        foreach (var o in other.Devices)
        {
            if (!mine.ContainsKey(o.Address)) result.Add($"{o.Address}: only after");
        }
        foreach (var n in VfioNodes.Except(other.VfioNodes, StringComparer.Ordinal)) result.Add($"/dev/vfio/{n}: gone");
        foreach (var n in other.VfioNodes.Except(VfioNodes, StringComparer.Ordinal)) result.Add($"/dev/vfio/{n}: appeared");
        return result;
    }

    public override string ToString()
    {
        var sb = new StringBuilder();
        foreach (var d in Devices) sb.AppendLine(d.ToString());
        sb.Append("/dev/vfio: ").Append(string.Join(' ', VfioNodes));
        return sb.ToString();
    }
}
