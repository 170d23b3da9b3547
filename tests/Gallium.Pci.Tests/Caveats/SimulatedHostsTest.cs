using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Caveats;

/// <summary>Builds simulated hosts for one test (each a topology made for the case) and deletes their trees afterwards.</summary>
public abstract class SimulatedHostsTest : IDisposable
{
    private readonly List<SimulatedKernel> _kernels = [];

    protected SimulatedKernel Build(HostTopology topology)
    {
        var k = topology.Build(SimulatedHosts.CreateTempRoot());
        _kernels.Add(k);
        return k;
    }

    /// <summary>The standard host (<see cref="StandardHost"/>), changed by <paramref name="extend"/> before it is built.</summary>
    protected SimulatedKernel Standard(Action<HostTopology>? extend = null)
    {
        var t = SimulatedHosts.StandardTopology(new HostOptions());
        extend?.Invoke(t);
        return Build(t);
    }

    public void Dispose()
    {
        foreach (var k in _kernels) k.DeleteTree();
        GC.SuppressFinalize(this);
    }
}
