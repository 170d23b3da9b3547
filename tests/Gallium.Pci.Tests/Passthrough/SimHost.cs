using System.Runtime.Versioning;
using Gallium.Pci.Host;
using Gallium.Pci.Passthrough;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Passthrough;

/// <summary>VM definitions for tests: which VM holds which host PCI addresses (what libvirt's persistent XML would say).</summary>
internal sealed class SimulatedAssignments : IAssignmentLookup
{
    private readonly Dictionary<string, HashSet<PciAddress>> _vms = new(StringComparer.Ordinal);

    public void Assign(string vm, params string[] addresses)
    {
        if (!_vms.TryGetValue(vm, out var set)) _vms[vm] = set = [];
        foreach (var a in addresses) set.Add(PciAddress.Parse(a));
    }

    public IReadOnlyList<string> VmsReferencing(IReadOnlyCollection<PciAddress> addresses) =>
        _vms.Where(vm => vm.Value.Overlaps(addresses)).Select(vm => vm.Key).Order(StringComparer.Ordinal).ToArray();
}

/// <summary>A simulated host (the standard one unless told otherwise) with a planner and a runner over it.</summary>
[SupportedOSPlatform("linux")]
internal sealed class SimHost : IDisposable
{
    private readonly TempDirectory _temp = new();

    public SimHost(HostOptions? options = null, bool root = true, Func<string, SimulatedKernel>? build = null)
    {
        string dir = _temp.Sub("host");
        Kernel = build?.Invoke(dir) ?? SimulatedHosts.Standard(dir, options ?? new HostOptions());
        Context = Kernel.CreateContext(root);
        Planner = new PassthroughPlanner(Context, Assignments);
        Runner = new PlanRunner(Context, TimeSpan.FromSeconds(30));
        Persistence = new PassthroughPersistence(Context.Paths);
    }

    public SimulatedKernel Kernel { get; }
    public HostContext Context { get; }
    public SimulatedAssignments Assignments { get; } = new();
    public PassthroughPlanner Planner { get; }
    public PlanRunner Runner { get; }
    public PassthroughPersistence Persistence { get; }
    public List<string> Verbose { get; } = [];

    public PassthroughPlan Enable(string address, bool allowHostCritical = false)
    {
        var plan = Planner.PlanEnable(PciAddress.Parse(address), allowHostCritical);
        Runner.Run(plan, Verbose.Add);
        return plan;
    }

    public PassthroughPlan Disable(string address)
    {
        var plan = Planner.PlanDisable(PciAddress.Parse(address));
        Runner.Run(plan, Verbose.Add);
        return plan;
    }

    /// <summary>Every persisted file (records, rules, script) with its mode and content; the lock directory is not state.</summary>
    public IReadOnlyList<string> Files()
    {
        var paths = Context.Paths;
        var result = new List<string>();
        foreach (string dir in new[] { paths.ConfigDirectory, paths.UdevRulesDirectory, paths.LibexecDirectory })
        {
            if (!Directory.Exists(dir)) continue;
            foreach (string f in Directory.EnumerateFileSystemEntries(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            {
                string mode = Convert.ToString((int)File.GetUnixFileMode(f), 8);
                result.Add(Directory.Exists(f) ? $"{f}/ {mode}" : $"{f} {mode} {File.ReadAllText(f).GetHashCode(StringComparison.Ordinal):x8}");
            }
        }
        return result;
    }

    public string Driver(string bdf) => Kernel.DriverOf(bdf) ?? "(none)";

    public void Dispose() => _temp.Dispose();
}
