using System.Globalization;
using System.Text;

namespace Gallium.Pci.Host;

/// <summary>The durable trace of a passthrough change in progress: <c>&lt;config&gt;/pending.d/group-&lt;N&gt;</c>, written
/// atomically and fsynced before the change's first write and removed when it completes or is rolled back, so that a
/// change whose process dies (SIGKILL, OOM, power loss) is found and repaired by the next command, and the boot applies
/// the group's start state instead of half its records. Plain text lines, so the apply script reads it too
/// (<c>member &lt;bdf&gt; driver=… override=… record=yes|no rule=yes|no</c>).</summary>
public sealed class PendingChanges
{
    public const string Subdirectory = "pending.d";
    private const string Prefix = "group-";
    private const string FormatVersion = "1";

    private readonly PassthroughPersistence _files;

    public PendingChanges(PassthroughPersistence files)
    {
        _files = files ?? throw new ArgumentNullException(nameof(files));
    }

    public string Directory => Path.Combine(_files.Paths.ConfigDirectory, Subdirectory);
    public string PathFor(int iommuGroup) => Path.Combine(Directory, Prefix + iommuGroup.ToString(CultureInfo.InvariantCulture));

    /// <summary>Records the change durably (atomic replace, fsync of file and directory) before anything else is written.
    /// Returns the directories it had to create, outermost first, for <see cref="Remove"/>.</summary>
    public IReadOnlyList<string> Write(UnfinishedChange change, Action<string>? narrate = null)
    {
        ArgumentNullException.ThrowIfNull(change);
        return _files.WriteFile(PathFor(change.IommuGroup), Format(change), PassthroughPersistence.FileMode, narrate);
    }

    /// <summary>The change is over (completed, or undone and checked): its trace goes, durably, and the directories
    /// <see cref="Write"/> made for it go too when nothing else is in them (a rolled-back change leaves the host as it began).</summary>
    public void Remove(int iommuGroup, Action<string>? narrate = null, IReadOnlyList<string>? createdDirectories = null)
    {
        _files.RemoveFile(PathFor(iommuGroup), narrate);
        if (createdDirectories is { Count: > 0 }) _files.RemoveEmptyDirectories(createdDirectories, narrate);
    }

    /// <summary>Every unfinished change on the host, by group. Throws when a trace cannot be trusted (a symbolic link,
    /// unreadable, malformed): acting on a guess could undo the wrong thing.</summary>
    public IReadOnlyList<UnfinishedChange> ReadAll()
    {
        var (changes, problems) = TryReadAll();
        if (problems.Count > 0) throw problems[0];
        return changes;
    }

    /// <summary>The same, for readers that must not stop: the traces that parse, and one error per trace that does not.</summary>
    public (IReadOnlyList<UnfinishedChange> Changes, IReadOnlyList<GalliumException> Problems) TryReadAll()
    {
        var changes = new List<UnfinishedChange>();
        var problems = new List<GalliumException>();
        if (!System.IO.Directory.Exists(Directory)) return (changes, problems);
        foreach (string path in System.IO.Directory.EnumerateFileSystemEntries(Directory).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(path);
            if (!name.StartsWith(Prefix, StringComparison.Ordinal)) continue;  // temp files of an atomic write start with '.'
            if (!Native.TryLstat(path, out uint type, out _, out _)) continue;  // removed meanwhile
            if (type != Native.S_IFREG)
            {
                problems.Add(new HostPathUnsafeException(path, "an unfinished-change record must be a regular file (this one is a symbolic link or special file)."));
                continue;
            }
            string? text = _files.ReadFile(path);
            if (text is null) continue;
            try { changes.Add(Parse(text, path)); }
            catch (PendingChangeUnreadableException e) { problems.Add(e); }
        }
        return (changes, problems);
    }

    public static string Format(UnfinishedChange change)
    {
        ArgumentNullException.ThrowIfNull(change);
        var b = new StringBuilder();
        string verb = change.Direction == PassthroughDirection.Enable ? "an Enable" : "a Disable";
        b.Append("# Gallium.PciPassthrough: ").Append(verb).Append(" of IOMMU group ").Append(change.IommuGroup)
         .Append(" in progress. Written before its first change and removed when it completes\n")
         .Append("# or is rolled back; still here means it was interrupted, and the next Enable or Disable repairs it first.\n");
        b.Append("change ").Append(FormatVersion).Append('\n');
        b.Append("direction ").Append(change.Direction == PassthroughDirection.Enable ? "enable" : "disable").Append('\n');
        b.Append("group ").Append(change.IommuGroup.ToString(CultureInfo.InvariantCulture)).Append('\n');
        b.Append("pid ").Append(change.ProcessId.ToString(CultureInfo.InvariantCulture)).Append('\n');
        b.Append("boot ").Append(Token(change.BootId)).Append('\n');
        b.Append("started ").Append(change.Started.UtcDateTime.ToString("O", CultureInfo.InvariantCulture)).Append('\n');
        foreach (string dir in change.AbsentDirectories)
        {
            if (dir.Contains('\n', StringComparison.Ordinal)) throw new ArgumentException($"A directory name with a newline cannot be recorded: {dir}", nameof(change));
            b.Append("absent ").Append(dir).Append('\n');
        }
        foreach (var m in change.Members)
        {
            b.Append("member ").Append(m.Address).Append(" driver=").Append(Token(m.Driver)).Append(" override=").Append(Token(m.DriverOverride))
             .Append(" record=").Append(m.Recorded ? "yes" : "no").Append(" rule=").Append(m.RuleWritten ? "yes" : "no").Append('\n');
        }
        return b.ToString();
    }

    public static UnfinishedChange Parse(string text, string path)
    {
        ArgumentNullException.ThrowIfNull(text);
        string? version = null, direction = null, boot = null;
        int? group = null, pid = null;
        DateTimeOffset started = default;
        var members = new List<UnfinishedMember>();
        var absent = new List<string>();
        int lineNo = 0;
        foreach (string raw in text.Split('\n'))
        {
            lineNo++;
            string line = raw.TrimEnd('\r');
            if (line.Length == 0 || line[0] == '#') continue;
            if (line.StartsWith("absent /", StringComparison.Ordinal)) { absent.Add(line["absent ".Length..]); continue; }
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            PendingChangeUnreadableException Bad(string why) => new(path, $"line {lineNo}: {why}");
            switch (f[0])
            {
                case "change" when f.Length == 2: version = f[1]; break;
                case "direction" when f.Length == 2 && f[1] is "enable" or "disable": direction = f[1]; break;
                case "group" when f.Length == 2 && int.TryParse(f[1], NumberStyles.None, CultureInfo.InvariantCulture, out int g): group = g; break;
                case "pid" when f.Length == 2 && int.TryParse(f[1], NumberStyles.None, CultureInfo.InvariantCulture, out int p): pid = p; break;
                case "boot" when f.Length == 2: boot = f[1] == "-" ? null : f[1]; break;
                case "started" when f.Length == 2:
                    if (!DateTimeOffset.TryParse(f[1], CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out started)) throw Bad("the start time does not parse");
                    break;
                case "member" when f.Length == 6:
                    if (!PciAddress.TryParse(f[1], out var address)) throw Bad($"'{Shown(f[1])}' is not a PCI address");
                    string? Value(string token, string key) =>
                        token.StartsWith(key + "=", StringComparison.Ordinal) ? token[(key.Length + 1)..] : throw Bad($"expected {key}=…");
                    bool YesNo(string token, string key) => Value(token, key) switch
                    {
                        "yes" => true,
                        "no" => false,
                        _ => throw Bad($"{key}= must be yes or no"),
                    };
                    string? Name(string token, string key)
                    {
                        string? v = Value(token, key);
                        if (v == "-") return null;
                        return v is { Length: > 0 and < 64 } && v.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.')
                            ? v : throw Bad($"{key}= is not a driver name");
                    }
                    members.Add(new UnfinishedMember(address, Name(f[2], "driver"), Name(f[3], "override"), YesNo(f[4], "record"), YesNo(f[5], "rule")));
                    break;
                default:
                    throw Bad($"unexpected '{Shown(f[0])}'");
            }
        }
        if (version != FormatVersion) throw new PendingChangeUnreadableException(path, version is null ? "no 'change' line" : $"format version {Shown(version)} is not one this module reads");
        if (direction is null || group is null || pid is null || started == default)
            throw new PendingChangeUnreadableException(path, "it lacks its direction, group, pid or start time");
        return new UnfinishedChange
        {
            IommuGroup = group.Value,
            Direction = direction == "enable" ? PassthroughDirection.Enable : PassthroughDirection.Disable,
            ProcessId = pid.Value,
            BootId = boot,
            Started = started,
            Members = members,
            AbsentDirectories = absent,
            Path = path,
        };
    }

    /// <summary>The running kernel's boot id, to tell whether an unfinished change began in this boot.</summary>
    public static string? CurrentBootId(IProcfs procfs) =>
        procfs.ReadText("sys/kernel/random/boot_id")?.Trim() is { Length: > 0 } id && id.All(c => char.IsAsciiHexDigit(c) || c == '-') ? id : null;

    private static string Token(string? value) => string.IsNullOrEmpty(value) ? "-" : value;

    /// <summary>Text from a file we did not write is never echoed raw into a message.</summary>
    private static string Shown(string s) => s.Length > 32 || s.Any(char.IsControl) ? "(unreadable text)" : s;
}

/// <summary>An unfinished-change record exists but cannot be read: acting on a guess could undo the wrong thing.</summary>
public sealed class PendingChangeUnreadableException : GalliumException
{
    public PendingChangeUnreadableException(string path, string why)
        : base("PendingChangeUnreadable", ErrorKind.InvalidData,
            $"The unfinished-change record {path} cannot be read ({why}), so the change it describes cannot be repaired automatically.", path)
    {
        Path = path;
        RecommendedAction = $"Check the IOMMU group it names by hand (Get-GalliumIommuGroup), then remove {path}.";
    }

    public string Path { get; }
    public override bool IsHostLevel => true;
}
