using Gallium.Pci.Host;

namespace Gallium.Pci.Passthrough;

/// <summary>The one way into a change of this host's passthrough state: takes the host lock and, before anything else,
/// repairs every change an earlier process left unfinished (killed, powered off), so no command ever acts on a
/// half-done group as if it were deliberate. Dispose releases the lock.</summary>
public sealed class HostChange : IDisposable
{
    private readonly HostLock _lock;

    private HostChange(HostLock hostLock, IReadOnlyList<RepairedChange> repaired)
    {
        _lock = hostLock;
        Repaired = repaired;
    }

    /// <summary>The unfinished changes found and repaired when the lock was taken (each also told through
    /// <see cref="Interruption.Warn"/>).</summary>
    public IReadOnlyList<RepairedChange> Repaired { get; }

    /// <summary>Takes the lock (waiting up to <paramref name="lockTimeout"/>), then repairs unfinished changes.</summary>
    /// <exception cref="UnfinishedChangeRepairFailedException">a change could be neither undone nor completed; the lock is released.</exception>
    public static HostChange Begin(HostContext host, TimeSpan lockTimeout, Interruption say)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(say);
        var hostLock = HostLock.Acquire(host.Paths, lockTimeout, say.Say);
        try
        {
            var repaired = new UnfinishedChangeRepair(host).RepairAll(say);
            return new HostChange(hostLock, repaired);
        }
        catch
        {
            hostLock.Dispose();
            throw;
        }
    }

    public void Dispose() => _lock.Dispose();
}
