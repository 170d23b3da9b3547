using System.Runtime.InteropServices;
using System.Text;

namespace Gallium.Pci.Host;

/// <summary>Makes a vfio-pci binding survive reboot and hot-plug, the driverctl way (REFERENCE §3.3, §4.2): a record per
/// device (<c>pci.d/&lt;bdf&gt;</c> holding <c>vfio-pci</c>), a udev rule per device that runs the apply script when the
/// device appears, and the apply script itself (which also has <c>--all</c> for a boot unit or an init without udev).
/// Every file is replaced atomically (temp file in the same directory, fsync, rename, fsync of the directory), with an
/// explicit mode (0644, the script 0755) whatever the umask, into directories only root can change.</summary>
public sealed class PassthroughPersistence
{
    public const string ScriptName = "gallium-vfio-apply";
    public const string RecordsSubdirectory = "pci.d";
    public const string RecordContent = DriverBinder.VfioPci + "\n";

    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
    public const UnixFileMode ScriptMode = FileMode | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
    private const UnixFileMode DirectoryMode = ScriptMode;

    public PassthroughPersistence(HostPaths paths)
    {
        Paths = paths ?? throw new ArgumentNullException(nameof(paths));
    }

    public HostPaths Paths { get; }

    public string RecordsDirectory => Path.Combine(Paths.ConfigDirectory, RecordsSubdirectory);
    public string RecordPath(PciAddress address) => Path.Combine(RecordsDirectory, address.ToString());
    /// <summary>Sorted before udev's 80-drivers.rules (whose RUN list loads the host driver), so the rule's ATTR assignment
    /// lands first (REFERENCE §8.1).</summary>
    public string RulePath(PciAddress address) => Path.Combine(Paths.UdevRulesDirectory, $"70-gallium-vfio-{address}.rules");
    /// <summary>The rule's name before it moved ahead of 80-drivers.rules: Enable and Disable remove it.</summary>
    public string LegacyRulePath(PciAddress address) => Path.Combine(Paths.UdevRulesDirectory, $"90-gallium-vfio-{address}.rules");
    public string ScriptPath => Path.Combine(Paths.LibexecDirectory, ScriptName);
    /// <summary>driverctl's record for the device (REFERENCE §4.2, §8.2): its content names the driver.</summary>
    public string DriverctlRecordPath(PciAddress address) => Path.Combine(Paths.DriverctlDirectory, $"pci-{address}");

    /// <summary>The driver driverctl persists for the device; null when driverctl has no record of it.</summary>
    public string? DriverctlDriver(PciAddress address) => ReadFile(DriverctlRecordPath(address))?.Trim() is { Length: > 0 } d ? d : null;

    /// <summary>Which tool persists the device for vfio-pci: Gallium's record first (Enable never writes one for a device
    /// driverctl owns), then driverctl's.</summary>
    public BindingPersistence PersistedBy(PciAddress address) =>
        ReadFile(RecordPath(address)) == RecordContent ? BindingPersistence.Gallium
        : DriverctlDriver(address) == DriverBinder.VfioPci ? BindingPersistence.Driverctl
        : BindingPersistence.None;

    /// <summary>The udev rule for one device, on hot-add and at boot (udev replays "add" for every device). PROGRAM runs
    /// and ATTR is written while the rules are applied; RUN programs (80-drivers.rules' kmod load among them) run only
    /// after every rule of the event was processed (REFERENCE §8.1). So the override is set before the host driver's
    /// module loads, and the apply script then binds vfio-pci.</summary>
    public string RuleContent(PciAddress address)
    {
        string script = CheckedUnquotedPath(ScriptPath, "a udev PROGRAM or RUN key");
        return "# Written by Gallium.PciPassthrough (Enable-GalliumPciPassthrough): hold this device for vfio-pci when it appears.\n" +
            "# Removed by Disable-GalliumPciPassthrough. The record is " + RecordPath(address) + ".\n" +
            "# Named to sort before 80-drivers.rules: the driver_override assignment is written while the rules are applied,\n" +
            "# before this event's RUN list (which holds the host driver's kmod load); the RUN program then binds vfio-pci.\n" +
            $"ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"{address}\", PROGRAM==\"{script} --wants %k\", RESULT==\"vfio-pci\", " +
            $"ATTR{{driver_override}}=\"vfio-pci\", RUN+=\"{script} %k\"\n";
    }

    /// <summary>A path that goes into a udev key or a systemd setting unquoted: only characters neither splits nor expands.</summary>
    internal static string CheckedUnquotedPath(string path, string where) =>
        path.All(c => char.IsAsciiLetterOrDigit(c) || c is '/' or '.' or '_' or '-' or '+' or ':' or '@')
            ? path
            : throw new HostPathUnsafeException(path, $"{where} cannot name it (spaces, quotes, % or $ would be split or expanded).");

    /// <summary>Whether the device's record and rule exist with exactly the content we would write.</summary>
    public bool IsPersisted(PciAddress address) =>
        ReadFile(RecordPath(address)) == RecordContent && ReadFile(RulePath(address)) == RuleContent(address);

    /// <summary>Every device that has a record.</summary>
    public IReadOnlyList<PciAddress> RecordedDevices()
    {
        if (!Directory.Exists(RecordsDirectory)) return [];
        return Directory.EnumerateFiles(RecordsDirectory)
            .Select(Path.GetFileName)
            .Select(n => PciAddress.TryParse(n, out var a) && a.ToString() == n ? a : (PciAddress?)null)
            .OfType<PciAddress>()
            .Order()
            .ToArray();
    }

    /// <summary>A persisted file's content; null when it does not exist (a symbolic link counts as absent: we never follow one).</summary>
    public string? ReadFile(string path)
    {
        if (!Native.TryLstat(path, out uint type, out _, out _) || type != Native.S_IFREG) return null;
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>Replaces <paramref name="path"/> atomically: readers see the old file or the new one, never a partial one.
    /// Returns the directories it had to create, outermost first (so an undo can remove them again).</summary>
    public IReadOnlyList<string> WriteFile(string path, string content, UnixFileMode mode, Action<string>? narrate = null)
    {
        if (OperatingSystem.IsWindows()) throw new PlatformNotSupportedException("Gallium changes Linux hosts only.");
        string dir = Path.GetDirectoryName(path)!;
        var created = new List<string>();
        for (string? d = dir; !string.IsNullOrEmpty(d) && !Native.TryLstat(d, out _, out _, out _); d = Path.GetDirectoryName(d))
            created.Insert(0, d);
        // Our own config directory is checked too: whoever can replace pci.d can replace the records.
        if (dir == RecordsDirectory || dir == PendingDirectory) SecureDirectory.Ensure(Paths.ConfigDirectory, DirectoryMode);
        SecureDirectory.Ensure(dir, DirectoryMode);
        narrate?.Invoke($"write {path} (mode {Convert.ToString((int)mode, 8)}, atomic replace)");
        // A leading dot and a non-.rules suffix: udev and the apply script's --all never read a half-written temp file.
        string temp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Guid.NewGuid():n}.tmp");
        try
        {
            using (var stream = new FileStream(temp, new FileStreamOptions
            {
                Mode = System.IO.FileMode.CreateNew,  // O_EXCL: never opens something planted at the temp name
                Access = FileAccess.Write,
                UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            }))
            {
                stream.Write(Encoding.UTF8.GetBytes(content));
                stream.Flush(flushToDisk: true);
            }
            File.SetUnixFileMode(temp, mode);  // explicit: the umask must not decide
            File.Move(temp, path, overwrite: true);  // rename(2)
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new PersistenceWriteException(path, e);
        }
        SyncDirectory(dir);
        return created;
    }

    /// <summary>Removes directories (innermost first) that are empty; one still holding anything stays.</summary>
    public void RemoveEmptyDirectories(IReadOnlyList<string> directories, Action<string>? narrate = null)
    {
        for (int i = directories.Count - 1; i >= 0; i--)
        {
            string d = directories[i];
            if (!Directory.Exists(d) || Directory.EnumerateFileSystemEntries(d).Any()) continue;
            narrate?.Invoke($"rmdir {d}");
            try { Directory.Delete(d); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new PersistenceWriteException(d, e); }
        }
    }

    /// <summary>Removes a persisted file (unlink: a symbolic link is removed, never followed). Absent is fine.</summary>
    public void RemoveFile(string path, Action<string>? narrate = null)
    {
        string dir = Path.GetDirectoryName(path)!;
        if (!Native.TryLstat(path, out _, out _, out _)) return;
        SecureDirectory.Check(dir);
        narrate?.Invoke($"remove {path}");
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new PersistenceWriteException(path, e); }
        SyncDirectory(dir);
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>fsync of the directory makes the rename itself durable.</summary>
    private static void SyncDirectory(string dir)
    {
        int fd = Native.open(dir, Native.O_CLOEXEC /* O_RDONLY = 0 */, 0);
        if (fd < 0) return;
        _ = Native.fsync(fd);
        _ = Native.close(fd);
    }

    /// <summary>Where unfinished changes are recorded (<see cref="PendingChanges"/>).</summary>
    public string PendingDirectory => Path.Combine(Paths.ConfigDirectory, PendingChanges.Subdirectory);

    /// <summary>The apply script (POSIX sh) as installed: this host's records and pending directories and /sys built in,
    /// nothing taken from the environment. REFERENCE §4.4 order: load vfio-pci first (§4.6), set the override before
    /// unbinding (§4.1), probe, then check the driver link (§3.6).</summary>
    public string ScriptContent => RenderScript("/sys", kernelSeam: null);

    /// <summary>The apply script with another sysfs root and, when <paramref name="kernelSeam"/> is given, its kernel
    /// functions (<c>kwrite</c>, <c>load_vfio_pci</c>, <c>syslog</c>) replaced: how a test gets its own copy that talks to a
    /// simulated kernel. The installed script has no such hook.</summary>
    internal string RenderScript(string sysfsRoot, string? kernelSeam)
    {
        const string begin = "# @SEAM-BEGIN kernel@", end = "# @SEAM-END kernel@";
        string t = ScriptTemplate.Value;
        int b = t.IndexOf(begin, StringComparison.Ordinal), e = t.IndexOf(end, StringComparison.Ordinal);
        if (b < 0 || e < b) throw new InvalidOperationException("The apply script's kernel seam markers are missing.");
        int bodyStart = t.IndexOf('\n', b) + 1, afterEnd = t.IndexOf('\n', e) + 1;
        string seam = kernelSeam ?? t[bodyStart..e];
        t = t[..b] + seam + t[afterEnd..];
        return t.Replace("@RECORDS@", ShellQuote(RecordsDirectory), StringComparison.Ordinal)
            .Replace("@PENDING@", ShellQuote(PendingDirectory), StringComparison.Ordinal)
            .Replace("@SYSFS@", ShellQuote(sysfsRoot), StringComparison.Ordinal);
    }

    internal static string ShellQuote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    /// <summary>The script's source, <c>Host/Scripts/gallium-vfio-apply.sh</c> in the repository (a real file, so shellcheck
    /// reads it), embedded in this assembly.</summary>
    private static readonly Lazy<string> ScriptTemplate = new(() => EmbeddedScripts.Read("gallium-vfio-apply.sh"));
}

/// <summary>Writing or removing a persisted passthrough file failed.</summary>
public sealed class PersistenceWriteException(string path, Exception inner)
    : GalliumException("PassthroughPersistenceFailed", ErrorKind.WriteError, $"Could not update {path}: {inner.Message}", path, inner)
{
    public string Path { get; } = path;
}

/// <summary>Shell scripts shipped inside the core assembly (EmbeddedResource items of Host/Scripts).</summary>
internal static class EmbeddedScripts
{
    public static string Read(string name)
    {
        using var stream = typeof(EmbeddedScripts).Assembly.GetManifestResourceStream("Gallium.Pci.Scripts." + name)
            ?? throw new InvalidOperationException($"The script {name} is not embedded in {typeof(EmbeddedScripts).Assembly.GetName().Name}.");
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return reader.ReadToEnd();
    }
}
