using System.Diagnostics;
using Gallium.Pci.Host;

namespace Gallium.Pci.Bench;

/// <summary>Passes every call to the kernel seam it wraps (the real /sys in the QEMU guest) and adds up the time spent inside
/// the kernel's writes (override, unbind, drivers_probe: the driver's release and probe run inside them), so the bench can
/// split a group change into the kernel's time and the module's own. Reads are counted and timed apart.</summary>
public sealed class TimingSysfs(ISysfs inner) : ISysfs
{
    private readonly object _gate = new();
    private long _writeTicks, _readTicks;
    private int _writes, _reads;

    public string Root => inner.Root;

    /// <summary>Time spent in writes since the last <see cref="Reset"/>.</summary>
    public double WriteMilliseconds { get { lock (_gate) return Stopwatch.GetElapsedTime(0, _writeTicks).TotalMilliseconds; } }
    public double ReadMilliseconds { get { lock (_gate) return Stopwatch.GetElapsedTime(0, _readTicks).TotalMilliseconds; } }
    public int Writes { get { lock (_gate) return _writes; } }
    public int Reads { get { lock (_gate) return _reads; } }

    public void Reset()
    {
        lock (_gate) { _writeTicks = _readTicks = 0; _writes = _reads = 0; }
    }

    private T Read<T>(Func<T> read)
    {
        long t0 = Stopwatch.GetTimestamp();
        try { return read(); }
        finally
        {
            long t = Stopwatch.GetTimestamp() - t0;
            lock (_gate) { _readTicks += t; _reads++; }
        }
    }

    public bool Exists(string path) => Read(() => inner.Exists(path));
    public string? ReadText(string path) => Read(() => inner.ReadText(path));
    public string? ReadLink(string path) => Read(() => inner.ReadLink(path));
    public string? Resolve(string path) => Read(() => inner.Resolve(path));
    public IReadOnlyList<string> List(string path) => Read(() => inner.List(path));

    public void Write(string path, string value, TimeSpan timeout)
    {
        long t0 = Stopwatch.GetTimestamp();
        try { inner.Write(path, value, timeout); }
        finally
        {
            long t = Stopwatch.GetTimestamp() - t0;
            lock (_gate) { _writeTicks += t; _writes++; }
        }
    }
}
