using Gallium.Pci.Host;
using Gallium.Pci.Passthrough;

namespace Gallium.Pci.Testing;

/// <summary>Leaves a simulated host the way a process killed mid-change leaves a real one, for suites (Pester) that cannot
/// catch the stand-in for the kill themselves: the change runs through the module's own planner and runner, the kernel
/// "kills" the writer right after its k-th write, and what is left (half the group moved, the unfinished-change record)
/// stays for the next command to find.</summary>
public static class Crashes
{
    /// <summary>Enable (or Disable) of the group of <paramref name="address"/>, killed right after kernel write
    /// <paramref name="afterWrite"/>. Returns false when the change made fewer writes than that (it completed).</summary>
    public static bool KillDuring(SimulatedKernel kernel, HostContext context, string address, bool enable, int afterWrite)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(context);
        var planner = new PassthroughPlanner(context, new NoVms());
        var a = PciAddress.Parse(address);
        var plan = enable ? planner.PlanEnable(a) : planner.PlanDisable(a);
        kernel.DieAfterWrite(afterWrite);
        try
        {
            new PlanRunner(context, TimeSpan.FromSeconds(30)).Run(plan);
            return false;
        }
        catch (SimulatedProcessDeathException)
        {
            return true;
        }
        finally
        {
            kernel.ClearFaults();
        }
    }

    private sealed class NoVms : IAssignmentLookup
    {
        public IReadOnlyList<string> VmsReferencing(IReadOnlyCollection<PciAddress> addresses) => [];
    }
}
