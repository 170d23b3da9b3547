namespace Gallium.Pci.Host;

/// <summary>One file that holds recorded devices for vfio-pci at some stage of boot.</summary>
/// <param name="Stage">"systemd", "initramfs-tools" or "dracut": the boot tool that reads it.</param>
public sealed record BootFile(string Stage, string Path, string Content, UnixFileMode Mode, string Description);

/// <summary>The files that set driver_override for every recorded device before any host driver can bind it, at each
/// stage of boot that comes before the real root's udev rules (REFERENCE §8.1, §8.2): an early systemd unit ordered before
/// udev's coldplug and systemd-modules-load, an initramfs-tools hook with an init-top script, and a dracut module. Each is
/// installed only where its tool is (its directory exists); all of them run the apply script's <c>--early</c> mode.</summary>
public sealed class BootStages(PassthroughPersistence persistence)
{
    public const string UnitName = "gallium-vfio-early.service";
    public const string InitramfsToolsName = "gallium-vfio";
    public const string DracutModuleName = "90gallium-vfio";

    private HostPaths Paths => persistence.Paths;

    public string UnitPath => Path.Combine(Paths.SystemdUnitDirectory, UnitName);
    /// <summary>A drop-in that makes sysinit.target want the unit (a plain file: no enable symlink to manage).</summary>
    public string UnitWantedByPath => Path.Combine(Paths.SystemdUnitDirectory, "sysinit.target.d", "gallium-vfio-early.conf");
    public string InitramfsHookPath => Path.Combine(Paths.InitramfsToolsDirectory, "hooks", InitramfsToolsName);
    public string InitramfsInitTopPath => Path.Combine(Paths.InitramfsToolsDirectory, "scripts", "init-top", InitramfsToolsName);
    public string DracutModuleDirectory => Path.Combine(Paths.DracutModulesDirectory, DracutModuleName);

    /// <summary>The boot files for the tools this host has, with the content Enable writes.</summary>
    public IReadOnlyList<BootFile> Files()
    {
        var files = new List<BootFile>();
        if (Directory.Exists(Paths.SystemdUnitDirectory))
        {
            files.Add(new("systemd", UnitPath, Render("gallium-vfio-early.service"), PassthroughPersistence.FileMode,
                $"install the early boot unit {UnitPath} (before udev's coldplug)"));
            files.Add(new("systemd", UnitWantedByPath, Render("gallium-vfio-early.conf"), PassthroughPersistence.FileMode,
                $"make sysinit.target want {UnitName} ({UnitWantedByPath})"));
        }
        if (Directory.Exists(Paths.InitramfsToolsDirectory))
        {
            files.Add(new("initramfs-tools", InitramfsHookPath, Render("initramfs-tools-hook.sh"), PassthroughPersistence.ScriptMode,
                $"install the initramfs-tools hook {InitramfsHookPath}"));
            files.Add(new("initramfs-tools", InitramfsInitTopPath, Render("initramfs-tools-init-top.sh"), PassthroughPersistence.ScriptMode,
                $"install the initramfs-tools init-top script {InitramfsInitTopPath}"));
        }
        if (Directory.Exists(Paths.DracutModulesDirectory))
        {
            string setup = Path.Combine(DracutModuleDirectory, "module-setup.sh");
            string hook = Path.Combine(DracutModuleDirectory, "gallium-vfio-early.sh");
            files.Add(new("dracut", setup, Render("dracut-module-setup.sh"), PassthroughPersistence.ScriptMode,
                $"install the dracut module {setup}"));
            files.Add(new("dracut", hook, Render("dracut-pre-udev.sh"), PassthroughPersistence.ScriptMode,
                $"install the dracut pre-udev hook {hook}"));
        }
        return files;
    }

    private string Render(string template)
    {
        string script = persistence.ScriptPath;
        return EmbeddedScripts.Read(template)
            .Replace("@SCRIPT_PATH@", PassthroughPersistence.CheckedUnquotedPath(script, "a systemd ExecStart= or udev key"), StringComparison.Ordinal)
            .Replace("@RECORDS@", PassthroughPersistence.CheckedUnquotedPath(persistence.RecordsDirectory, "a systemd Condition or udev key"), StringComparison.Ordinal)
            .Replace("@SCRIPT@", PassthroughPersistence.ShellQuote(script), StringComparison.Ordinal)
            .Replace("@CONFIG@", PassthroughPersistence.ShellQuote(Paths.ConfigDirectory), StringComparison.Ordinal);
    }
}
