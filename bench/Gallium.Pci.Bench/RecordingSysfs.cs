using Gallium.Pci.Host;

namespace Gallium.Pci.Bench;

/// <summary>Passes every call to the kernel seam it wraps (the simulated kernel) and records it in order, so the bench can
/// say what a group change read and wrote, and which reads repeated a path no write had touched in between.</summary>
public sealed class RecordingSysfs(ISysfs inner) : ISysfs
{
    private readonly List<SysfsCall> _calls = [];
    private readonly object _gate = new();

    public string Root => inner.Root;

    public IReadOnlyList<SysfsCall> Calls
    {
        get { lock (_gate) return _calls.ToArray(); }
    }

    public void Clear()
    {
        lock (_gate) _calls.Clear();
    }

    private void Record(SysfsCallKind kind, string path, string? value = null)
    {
        lock (_gate) _calls.Add(new SysfsCall(kind, path, value));
    }

    public bool Exists(string path) { Record(SysfsCallKind.Exists, path); return inner.Exists(path); }
    public string? ReadText(string path) { Record(SysfsCallKind.ReadText, path); return inner.ReadText(path); }
    public string? ReadLink(string path) { Record(SysfsCallKind.ReadLink, path); return inner.ReadLink(path); }
    public string? Resolve(string path) { Record(SysfsCallKind.Resolve, path); return inner.Resolve(path); }
    public IReadOnlyList<string> List(string path) { Record(SysfsCallKind.List, path); return inner.List(path); }

    public void Write(string path, string value, TimeSpan timeout)
    {
        Record(SysfsCallKind.Write, path, value);
        inner.Write(path, value, timeout);
    }
}

public enum SysfsCallKind { Exists, ReadText, ReadLink, Resolve, List, Write }

public sealed record SysfsCall(SysfsCallKind Kind, string Path, string? Value)
{
    public bool IsWrite => Kind == SysfsCallKind.Write;
    public override string ToString() => IsWrite ? $"{Kind} {Path} <- {Value?.TrimEnd('\n')}" : $"{Kind} {Path}";
}
