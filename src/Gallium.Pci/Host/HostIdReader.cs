using System.Globalization;

namespace Gallium.Pci.Host;

/// <summary>Reads <see cref="HostId"/> through the host's seams, so a simulated host has its own name and machine id.</summary>
public static class HostIdReader
{
    public static HostId Read(HostContext host)
    {
        ArgumentNullException.ThrowIfNull(host);
        string? name = host.Procfs.ReadText("sys/kernel/hostname")?.Trim();
        return new HostId(string.IsNullOrEmpty(name) ? Environment.MachineName : name, ReadMachineId(host.Paths.MachineIdFile));
    }

    /// <summary>machine-id(5): one line of 32 lowercase hex digits; anything else (missing, "uninitialized", empty) is no id.</summary>
    internal static string? ReadMachineId(string path)
    {
        string text;
        try { text = File.ReadAllText(path).Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
        return text.Length == 32 && text.All(char.IsAsciiHexDigit) ? text.ToLower(CultureInfo.InvariantCulture) : null;
    }
}
