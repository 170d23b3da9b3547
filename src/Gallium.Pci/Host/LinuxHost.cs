using System.Diagnostics;

namespace Gallium.Pci.Host;

public sealed class LinuxProcfs(string root) : IProcfs
{
    public string Root { get; } = Path.GetFullPath(root);

    public string? ReadText(string path)
    {
        try { return File.ReadAllText(Path.Combine(Root, path)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}

public sealed class LinuxDevfs(string root) : IDevfs
{
    public string Root { get; } = Path.GetFullPath(root);
    public bool Exists(string path) => File.Exists(Path.Combine(Root, path)) || Directory.Exists(Path.Combine(Root, path));
}

/// <summary>Loads modules with the system's modprobe, as libvirt does (REFERENCE §4.1 virPCIProbeStubDriver).</summary>
public sealed class Modprobe(IProcfs procfs) : IKernelModules
{
    public bool IsAvailable(string module)
    {
        string? release = procfs.ReadText("sys/kernel/osrelease")?.Trim();
        if (string.IsNullOrEmpty(release) || release.Contains('/')) return false;
        string wanted = ModuleName(module);
        foreach (var list in new[] { "modules.dep", "modules.builtin" })
        {
            try
            {
                foreach (var line in File.ReadLines($"/lib/modules/{release}/{list}"))
                {
                    int colon = line.IndexOf(':');
                    if (ModuleName(Path.GetFileName(colon < 0 ? line : line[..colon])) == wanted) return true;
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return false;
    }

    /// <summary>modprobe treats '-' and '_' alike; a file name (vfio-pci.ko.xz) names its module up to ".ko".</summary>
    internal static string ModuleName(string name)
    {
        int ko = name.IndexOf(".ko", StringComparison.Ordinal);
        return (ko < 0 ? name : name[..ko]).Replace('-', '_');
    }

    public string? Load(string module)
    {
        string? exe = new[] { "/usr/sbin/modprobe", "/sbin/modprobe", "/usr/bin/modprobe", "/bin/modprobe" }.FirstOrDefault(File.Exists);
        if (exe is null) return "modprobe is not installed (package kmod)";
        try
        {
            using var p = Process.Start(new ProcessStartInfo(exe, ["-q", module])
            { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false })!;
            string err = p.StandardError.ReadToEnd();
            if (!p.WaitForExit(30_000)) { p.Kill(); return "modprobe did not finish within 30 s"; }
            return p.ExitCode == 0 ? null : $"modprobe {module} exited {p.ExitCode}: {err.Trim()}";
        }
        catch (System.ComponentModel.Win32Exception e) { return e.Message; }
    }
}

public sealed class ProcessIdentity : IHostIdentity
{
    public bool IsRoot => Environment.UserName == "root" || geteuid() == 0;

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern uint geteuid();
}
