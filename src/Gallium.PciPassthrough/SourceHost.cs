using System.Management.Automation;
using Gallium.Pci;

namespace Gallium.PciPassthrough;

/// <summary>The Host an object piped in says it was read on. Bound by property name without coercion (PowerShell stops at the
/// first pass that binds anything, and a deserialized device's Address binds in that pass), so the parameter takes the value as
/// it comes: a live <see cref="HostId"/>, or its deserialized property bag from another session.</summary>
internal static class SourceHost
{
    public static HostId? From(object? value)
    {
        object? v = value is PSObject p ? p.BaseObject : value;
        if (v is HostId id) return id;
        if (value is not PSObject bag || v is string) return null;   // a CSV column named Host says nothing checkable
        string? name = bag.Properties["Name"]?.Value?.ToString();
        string? machineId = bag.Properties["MachineId"]?.Value?.ToString();
        return name is null ? null : new HostId(name, string.IsNullOrEmpty(machineId) ? null : machineId);
    }
}
