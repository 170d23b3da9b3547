using System.Globalization;

namespace Gallium.Pci.Host;

/// <summary>One line of /proc/iomem: <c>"%*s%0*llx-%0*llx : %s"</c>, indented two spaces per level of the resource tree
/// ([K] kernel/resource.c r_show). Start and end are inclusive.</summary>
public sealed record IoMemEntry(int Depth, ulong Start, ulong End, string Name)
{
    public bool Overlaps(ulong start, ulong end) => Start <= end && start <= End;
    public override string ToString() => $"{Start:x}-{End:x} : {Name}";
}

/// <summary>The physical address map from /proc/iomem, and the firmware framebuffers in it (REFERENCE §8.4).</summary>
public sealed class IoMem
{
    /// <summary>Names a firmware framebuffer registers its memory under. efifb, vesafb, simplefb request the region with their
    /// own names; sysfb's simple-framebuffer device (CONFIG_SYSFB_SIMPLEFB) inserts it as BOOTFB; simpledrm requests it under its
    /// driver name. Seen on the guest's 6.1 kernel: "fd000000-fdffffff : vesafb" inside the VGA function's BAR 0.</summary>
    public static readonly IReadOnlyCollection<string> FirmwareFramebufferNames =
        new HashSet<string>(["BOOTFB", "efifb", "vesafb", "simplefb", "simple-framebuffer", "simpledrm", "efi-framebuffer", "vesa-framebuffer"],
            StringComparer.Ordinal);

    private IoMem(IReadOnlyList<IoMemEntry> entries) => Entries = entries;

    public IReadOnlyList<IoMemEntry> Entries { get; }

    /// <summary>True when every address reads 0: the kernel hides addresses from a reader without CAP_SYS_ADMIN, so nothing
    /// can be matched (an unprivileged -WhatIf cannot see framebuffers).</summary>
    public bool IsRedacted => Entries.Count > 0 && Entries.All(e => e.Start == 0 && e.End == 0);

    public static IoMem Read(IProcfs procfs) => Parse(procfs.ReadText("iomem"));

    public static IoMem Parse(string? text)
    {
        var entries = new List<IoMemEntry>();
        if (text is null) return new IoMem(entries);
        foreach (string line in text.Split('\n'))
        {
            int indent = 0;
            while (indent < line.Length && line[indent] == ' ') indent++;
            var rest = line.AsSpan(indent);
            int dash = rest.IndexOf('-');
            int colon = rest.IndexOf(" : ", StringComparison.Ordinal);
            if (dash <= 0 || colon <= dash) continue;
            if (!ulong.TryParse(rest[..dash], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong start)) continue;
            if (!ulong.TryParse(rest[(dash + 1)..colon], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong end)) continue;
            entries.Add(new IoMemEntry(indent / 2, start, end, rest[(colon + 3)..].TrimEnd().ToString()));
        }
        return new IoMem(entries);
    }

    /// <summary>The firmware framebuffer entries.</summary>
    public IEnumerable<IoMemEntry> FirmwareFramebuffers => Entries.Where(e => FirmwareFramebufferNames.Contains(e.Name));

    /// <summary>Each assigned memory BAR of the device that a firmware framebuffer holds part of, with that framebuffer.</summary>
    public IReadOnlyList<(PciBar Bar, IoMemEntry Framebuffer)> FramebuffersIn(IReadOnlyList<PciBar> bars)
    {
        var found = new List<(PciBar, IoMemEntry)>();
        if (IsRedacted) return found;
        foreach (var fb in FirmwareFramebuffers)
        {
            foreach (var bar in bars)
            {
                if (bar.IsIo || !bar.IsAssigned || bar.Size == 0) continue;
                if (fb.Overlaps(bar.Start, bar.Start + bar.Size - 1)) found.Add((bar, fb));
            }
        }
        return found;
    }

    /// <summary>The kernel parameters that stop this holder: its own video=…:off where it has one, and always
    /// initcall_blacklist=sysfb_init, which keeps sysfb from creating any firmware framebuffer device.</summary>
    public static IReadOnlyList<string> ParametersThatFree(string holder) => holder switch
    {
        "efifb" or "efi-framebuffer" => ["video=efifb:off", "initcall_blacklist=sysfb_init"],
        "vesafb" or "vesa-framebuffer" => ["video=vesafb:off", "initcall_blacklist=sysfb_init"],
        _ => ["initcall_blacklist=sysfb_init"],
    };
}
