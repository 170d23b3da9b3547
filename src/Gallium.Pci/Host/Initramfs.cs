using System.Diagnostics;
using Gallium.Pci.Passthrough;

namespace Gallium.Pci.Host;

/// <summary>The host's initramfs generator (REFERENCE §8.2): lists what an image holds, names the host driver modules of a
/// device, and regenerates the images.</summary>
public interface IInitramfsTool
{
    /// <summary>"initramfs-tools", "dracut", or null when neither is installed.</summary>
    string? Generator { get; }
    /// <summary>The exact command that regenerates every installed kernel's initramfs.</summary>
    string? UpdateCommand { get; }
    /// <summary>The paths the image holds (relative, no leading slash); null when it cannot be listed.</summary>
    IReadOnlyList<string>? List(string image);
    /// <summary>The modules the kernel's modules.alias names for a modalias (modprobe -R).</summary>
    IReadOnlyList<string> ModulesFor(string modalias);
    /// <summary>Runs <see cref="UpdateCommand"/>; null on success, else what went wrong (exit code and the output's tail).</summary>
    string? Update();
}

/// <summary>Whether a change makes the current initramfs stale, and why (shown by Enable/Disable).</summary>
/// <param name="Image">The current kernel's image, e.g. /boot/initrd.img-6.1.0-27-amd64.</param>
/// <param name="Reason">One sentence naming the devices and what the image does to them.</param>
/// <param name="Command">The exact command that regenerates it.</param>
public sealed record InitramfsAdvice(string Image, string Reason, string Command);

/// <summary>Decides whether the current kernel's initramfs must be regenerated after an Enable or a Disable: the image is
/// stale when it loads a group member's host driver but lacks the member's record (the driver would take the device
/// before the real root's rule runs), or still carries a record Disable removed (it would hold the device for vfio-pci
/// at the next boot with no rule left to bind it).</summary>
public sealed class InitramfsCheck(HostContext host)
{
    private readonly PassthroughPersistence _persistence = new(host.Paths);

    /// <summary>The current kernel's image; null when there is none.</summary>
    public string? CurrentImage()
    {
        string? release = host.Procfs.ReadText("sys/kernel/osrelease")?.Trim();
        if (string.IsNullOrEmpty(release) || release.Contains('/')) return null;
        return new[] { $"initrd.img-{release}", $"initramfs-{release}.img" }
            .Select(n => Path.Combine(host.Paths.BootDirectory, n)).FirstOrDefault(File.Exists);
    }

    /// <summary>Advice for the group as the plan leaves it (Enable: every endpoint recorded, except those driverctl owns;
    /// Disable: none); null when the image is current, absent, or cannot be read.</summary>
    public InitramfsAdvice? Check(PassthroughPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        var tool = host.Initramfs;
        if (tool.Generator is null || tool.UpdateCommand is not string command) return null;
        if (CurrentImage() is not string image || tool.List(image) is not { } listing) return null;
        var paths = listing.Select(p => p.TrimStart('.').TrimStart('/')).ToHashSet(StringComparer.Ordinal);
        var modules = paths.Select(p => Modprobe.ModuleName(Path.GetFileName(p))).ToHashSet(StringComparer.Ordinal);

        var loads = new List<string>();
        var stale = new List<string>();
        foreach (var d in plan.IommuGroup.Devices.Where(d => !d.IsBridge))
        {
            bool recorded = plan.Direction == PassthroughDirection.Enable
                && _persistence.DriverctlDriver(d.Address) != DriverBinder.VfioPci;
            bool carried = paths.Contains(_persistence.RecordPath(d.Address).TrimStart('/'));
            if (recorded && !carried)
            {
                var hostModules = HostModules(d).Where(modules.Contains).ToArray();
                if (hostModules.Length > 0) loads.Add($"{string.Join(", ", hostModules)} (the host driver of {d.Address})");
            }
            else if (!recorded && carried) stale.Add(d.Address.ToString());
        }
        if (loads.Count == 0 && stale.Count == 0) return null;
        string reason = loads.Count > 0
            ? $"The initramfs {image} loads {string.Join("; ", loads)} before the real root's udev rules run, and does not yet hold the device's record: a host driver would take it at boot."
            : $"The initramfs {image} still holds the record of {string.Join(", ", stale)}: at the next boot it would hold the device for vfio-pci with no rule left to bind it.";
        return new InitramfsAdvice(image, reason, command);
    }

    /// <summary>The modules that would bind the device as a host driver: its current driver's module (unless vfio-pci) and
    /// what modules.alias names for its modalias.</summary>
    private IEnumerable<string> HostModules(PciDevice d)
    {
        var names = new List<string>();
        if (d.Driver is string drv && drv != DriverBinder.VfioPci
            && SysfsFormat.LinkName(host.Sysfs.ReadLink($"{DriverBinder.DriverPath(drv)}/module")) is string module)
            names.Add(Modprobe.ModuleName(module));
        if (host.Sysfs.ReadText($"{DriverBinder.DevicePath(d.Address)}/modalias")?.Trim() is { Length: > 0 } alias)
            names.AddRange(host.Initramfs.ModulesFor(alias).Select(Modprobe.ModuleName));
        return names.Where(n => n != "vfio_pci").Distinct();
    }
}

/// <summary>initramfs-tools (update-initramfs, lsinitramfs) or dracut (dracut, lsinitrd), whichever is installed.</summary>
public sealed class SystemInitramfsTool : IInitramfsTool
{
    private static readonly string[] Bin = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

    private static string? Find(string name) => Bin.Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    public string? Generator =>
        Find("update-initramfs") is not null ? "initramfs-tools" : Find("dracut") is not null ? "dracut" : null;

    public string? UpdateCommand => Generator switch
    {
        "initramfs-tools" => "update-initramfs -u -k all",
        "dracut" => "dracut --regenerate-all --force",
        _ => null,
    };

    public IReadOnlyList<string>? List(string image)
    {
        if (Find("lsinitramfs") is string ls)
            return Run(ls, [image], TimeSpan.FromMinutes(2)) is (0, var text) ? Lines(text) : null;
        if (Find("lsinitrd") is string lsinitrd && Run(lsinitrd, [image], TimeSpan.FromMinutes(2)) is (0, var listing))
        {
            // ls -l lines: the path is the last field (before " -> " for a link).
            return Lines(listing).Where(l => l.Length > 10 && "-dlcbps".Contains(l[0]) && l[1] is 'r' or '-')
                .Select(l => l.Split(" -> ")[0].Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1]).ToArray();
        }
        return null;
    }

    public IReadOnlyList<string> ModulesFor(string modalias)
    {
        if (Find("modprobe") is not string modprobe) return [];
        return Run(modprobe, ["-R", modalias], TimeSpan.FromSeconds(30)) is (0, var text) ? Lines(text) : [];
    }

    public string? Update()
    {
        string? command = UpdateCommand;
        if (command is null) return "neither initramfs-tools nor dracut is installed";
        string[] words = command.Split(' ');
        if (Find(words[0]) is not string exe) return $"{words[0]} is not installed";
        var (code, output) = Run(exe, words[1..], TimeSpan.FromMinutes(15));
        if (code == 0) return null;
        string tail = string.Join(" | ", Lines(output).TakeLast(5));
        return $"{command} exited {code}: {tail}";
    }

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static (int Code, string Output) Run(string exe, IEnumerable<string> args, TimeSpan timeout)
    {
        try
        {
            var psi = new ProcessStartInfo(exe, args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            using var p = Process.Start(psi)!;
            var err = p.StandardError.ReadToEndAsync();
            string output = p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(timeout)) { p.Kill(entireProcessTree: true); return (-1, output + $"\n{exe} did not finish within {timeout.TotalSeconds:0} s"); }
            return (p.ExitCode, output + err.GetAwaiter().GetResult());
        }
        catch (System.ComponentModel.Win32Exception e) { return (-1, e.Message); }
    }
}

/// <summary>Regenerating the initramfs (-UpdateInitramfs) failed; the binding change itself is complete.</summary>
public sealed class InitramfsUpdateFailedException : GalliumException
{
    public InitramfsUpdateFailedException(string image, string command, string reason)
        : base("InitramfsUpdateFailed", ErrorKind.WriteError,
            $"The passthrough change is complete, but regenerating the initramfs failed: {reason}", image)
    {
        RecommendedAction = $"Fix the cause and run: {command}";
    }
}
