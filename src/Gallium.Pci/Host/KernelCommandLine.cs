namespace Gallium.Pci.Host;

/// <summary>The running kernel's command line (/proc/cmdline) as the kernel splits it: parameters separated by white space,
/// <c>key=value</c>, and everything after <c>--</c> handed to init ([K] kernel-parameters.txt).</summary>
public static class KernelCommandLine
{
    /// <summary>Each <c>key=value</c> parameter before "--": the token as written, its key, and its value without quotes.</summary>
    public static IEnumerable<(string Token, string Key, string Value)> Parameters(string? cmdline)
    {
        if (string.IsNullOrEmpty(cmdline)) yield break;
        foreach (string raw in cmdline.Split([' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries))
        {
            if (raw == "--") yield break;
            int eq = raw.IndexOf('=');
            if (eq <= 0) continue;
            yield return (raw, raw[..eq], raw[(eq + 1)..].Trim('"'));
        }
    }

    /// <summary>The last <c>pcie_acs_override=</c> token, exactly as written; null when there is none. The parameter exists only
    /// in out-of-tree patches (Proxmox, linux-zen, Arch linux-vfio): <c>downstream</c>, <c>multifunction</c>, <c>id:vvvv:dddd</c>,
    /// comma separated (REFERENCE §8.4).</summary>
    public static string? AcsOverride(string? cmdline) =>
        Parameters(cmdline).LastOrDefault(p => p.Key == "pcie_acs_override" && p.Value.Length > 0).Token;

    /// <summary><c>vfio_iommu_type1.allow_unsafe_interrupts=</c> on the command line (a module parameter the kernel hands to the
    /// module when it loads): true for 1/Y/y, false for 0/N/n, null when absent.</summary>
    public static bool? AllowUnsafeInterrupts(string? cmdline) =>
        Parameters(cmdline).LastOrDefault(p => p.Key is "vfio_iommu_type1.allow_unsafe_interrupts").Value is { } v
            ? ParseBoolParameter(v) : null;

    /// <summary>A bool module parameter as the kernel reads one (param_set_bool → kstrtobool): 1/y/Y/on true, 0/n/N/off false.</summary>
    public static bool? ParseBoolParameter(string? text) => text?.Trim() switch
    {
        "1" or "y" or "Y" or "on" => true,
        "0" or "n" or "N" or "off" => false,
        _ => null,
    };
}
