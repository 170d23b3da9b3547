using System.Text.RegularExpressions;

namespace Gallium.Pci.Bench;

/// <summary>What one command did to sysfs: reads and writes per function, and every read that repeated an earlier read of
/// the same path — split into re-reads after a write to that function (checks of a change), the one deliberate second
/// look the caller names (the runner's check under the host lock that nothing changed since the plan), and re-reads of
/// something no write had touched (the waste the bench looks for).</summary>
public sealed record TraceSummary(
    int Reads,
    int Writes,
    int DistinctReadPaths,
    int RereadsAfterChange,
    int RereadsChecked,
    int RereadsUnchanged,
    IReadOnlyList<DeviceCount> PerDevice,
    IReadOnlyList<PatternCount> ReadsByAttribute,
    IReadOnlyList<PatternCount> WritesByAttribute,
    IReadOnlyList<PatternCount> UnchangedRereads);

public sealed record DeviceCount(string Address, int Reads, int Writes);

/// <summary>A path with the function address and group number replaced (<c>bus/pci/devices/&lt;fn&gt;/driver</c>).</summary>
public sealed record PatternCount(string Pattern, int Count)
{
    public override string ToString() => $"{Pattern} x{Count}";
}

public static partial class SysfsTrace
{
    [GeneratedRegex(@"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")]
    private static partial Regex Address();

    [GeneratedRegex(@"iommu_groups/\d+")]
    private static partial Regex Group();

    /// <summary>The function a call is about: the address in its path, else (unbind, drivers_probe) the address it writes.</summary>
    public static string? DeviceOf(SysfsCall call)
    {
        var m = Address().Match(call.Path);
        if (m.Success) return m.Value;
        string? v = call.Value?.Trim();
        return v is not null && Address().IsMatch(v) ? v : null;
    }

    public static string Pattern(string path) => Group().Replace(Address().Replace(path, "<fn>"), "iommu_groups/<group>");

    /// <param name="checkPatterns">Patterns (<see cref="Pattern"/>, prefixed with the call kind) whose second read of a path
    /// is the deliberate pre-act check rather than waste; a third read is waste again.</param>
    public static TraceSummary Analyze(IReadOnlyList<SysfsCall> calls, IEnumerable<string> devices, IReadOnlyCollection<string>? checkPatterns = null)
    {
        ArgumentNullException.ThrowIfNull(calls);
        var members = devices.ToList();
        var checks = new HashSet<string>(checkPatterns ?? [], StringComparer.Ordinal);
        var readCount = new Dictionary<string, int>(StringComparer.Ordinal);
        int checkedRereads = 0;
        var lastRead = new Dictionary<string, int>(StringComparer.Ordinal);
        var lastWriteTo = new Dictionary<string, int>(StringComparer.Ordinal);
        int lastAnyWrite = -1, afterChange = 0, unchanged = 0;
        var unchangedPatterns = new Dictionary<string, int>(StringComparer.Ordinal);

        for (int i = 0; i < calls.Count; i++)
        {
            var call = calls[i];
            string? device = DeviceOf(call);
            if (call.IsWrite)
            {
                lastAnyWrite = i;
                if (device is not null) lastWriteTo[device] = i;
                continue;
            }
            string key = call.Kind + " " + call.Path;
            if (lastRead.TryGetValue(key, out int previous))
            {
                // A path of one function changes only through writes about that function; anything else through any write.
                int changedAt = device is null ? lastAnyWrite : lastWriteTo.GetValueOrDefault(device, -1);
                string pattern = call.Kind + " " + Pattern(call.Path);
                if (changedAt > previous) afterChange++;
                else if (readCount[key] == 1 && checks.Contains(pattern)) checkedRereads++;
                else
                {
                    unchanged++;
                    unchangedPatterns[pattern] = unchangedPatterns.GetValueOrDefault(pattern) + 1;
                }
            }
            lastRead[key] = i;
            readCount[key] = readCount.GetValueOrDefault(key) + 1;
        }

        var perDevice = members.Select(d => new DeviceCount(d,
            calls.Count(c => !c.IsWrite && DeviceOf(c) == d),
            calls.Count(c => c.IsWrite && DeviceOf(c) == d))).ToArray();

        return new TraceSummary(
            calls.Count(c => !c.IsWrite),
            calls.Count(c => c.IsWrite),
            lastRead.Count,
            afterChange,
            checkedRereads,
            unchanged,
            perDevice,
            Counts(calls.Where(c => !c.IsWrite).Select(c => c.Kind + " " + Pattern(c.Path))),
            Counts(calls.Where(c => c.IsWrite).Select(c => Pattern(c.Path))),
            unchangedPatterns.OrderByDescending(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal)
                .Select(p => new PatternCount(p.Key, p.Value)).ToArray());
    }

    private static PatternCount[] Counts(IEnumerable<string> patterns) =>
        patterns.GroupBy(p => p, StringComparer.Ordinal).Select(g => new PatternCount(g.Key, g.Count()))
            .OrderByDescending(p => p.Count).ThenBy(p => p.Pattern, StringComparer.Ordinal).ToArray();
}
