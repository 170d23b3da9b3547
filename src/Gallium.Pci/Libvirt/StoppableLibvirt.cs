namespace Gallium.Pci.Libvirt;

/// <summary>A libvirt connection a stop request can leave: a wedged libvirtd (a socket that accepts and never answers, a
/// daemon stuck behind a hung QEMU) blocks libvirt's client calls forever in native code, where Ctrl+C cannot reach them.
/// Reads (connecting included) run on their own background thread while the caller waits for the answer or the stop
/// token; on a stop the caller gets <see cref="OperationCanceledException"/> at once and the abandoned call ends (or not)
/// on its own. Writes are never abandoned: a define libvirt may still apply after we gave up would change a VM behind a
/// command that said it stopped. Each call runs whole on one thread, so libvirt's thread-local last error is read where it
/// was set (REFERENCE §5.5).</summary>
public sealed class StoppableLibvirt : ILibvirt
{
    private readonly ILibvirt _inner;
    private readonly CancellationToken _stop;
    private int _abandoned;

    private StoppableLibvirt(ILibvirt inner, CancellationToken stop)
    {
        _inner = inner;
        _stop = stop;
        Uri = inner.Uri;
    }

    /// <summary>Connects through <paramref name="open"/> on a worker; a token that cannot be cancelled connects directly.</summary>
    public static ILibvirt Open(Func<ILibvirt> open, CancellationToken stop)
    {
        ArgumentNullException.ThrowIfNull(open);
        if (!stop.CanBeCanceled) return open();
        return new StoppableLibvirt(Call(open, stop, onLateResult: static c => c.Dispose()), stop);
    }

    /// <summary>Runs <paramref name="read"/> on its own background thread and waits for it or for <paramref name="stop"/>.
    /// A result that arrives after the caller left is handed to <paramref name="onLateResult"/> (a connection is closed).</summary>
    public static T Call<T>(Func<T> read, CancellationToken stop, Action<T>? onLateResult = null)
    {
        ArgumentNullException.ThrowIfNull(read);
        stop.ThrowIfCancellationRequested();
        if (!stop.CanBeCanceled) return read();
        var answer = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        int state = Waiting;   // one owner for a late result: whichever side moves the state first
        var worker = new Thread(() =>
        {
            try
            {
                T value = read();
                answer.TrySetResult(value);
                if (Interlocked.CompareExchange(ref state, Delivered, Waiting) == Left) onLateResult?.Invoke(value);
            }
            catch (Exception e) { answer.TrySetException(e); }
        })
        { IsBackground = true, Name = "libvirt call" };   // a call that never returns must not keep the process alive
        worker.Start();
        try { answer.Task.Wait(stop); }
        catch (OperationCanceledException) when (Interlocked.CompareExchange(ref state, Left, Waiting) == Waiting) { throw; }
        catch (OperationCanceledException) { /* it answered as the stop came: the answer stands, the stop is seen next */ }
        catch (AggregateException) { /* the call's own exception, rethrown unwrapped below */ }
        return answer.Task.GetAwaiter().GetResult();
    }

    private const int Waiting = 0, Left = 1, Delivered = 2;

    public string Uri { get; }

    public Version LibraryVersion => Read(() => _inner.LibraryVersion);

    public IReadOnlyList<LibvirtDomain> ListDomains() => Read(_inner.ListDomains);

    public LibvirtDomain GetDomain(string vmName) => Read(() => _inner.GetDomain(vmName));

    public string GetDefinition(string vmName) => Read(() => _inner.GetDefinition(vmName));

    public void AttachDeviceToConfig(string vmName, string deviceXml) => _inner.AttachDeviceToConfig(vmName, deviceXml);

    public void DetachDeviceFromConfig(string vmName, string deviceXml) => _inner.DetachDeviceFromConfig(vmName, deviceXml);

    public LibvirtDomain DefineDomain(string domainXml) => _inner.DefineDomain(domainXml);

    public LibvirtDomain CreateTransientDomain(string domainXml, bool paused) => _inner.CreateTransientDomain(domainXml, paused);

    public void StartDomain(string vmName, bool paused) => _inner.StartDomain(vmName, paused);

    public void DestroyDomain(string vmName) => _inner.DestroyDomain(vmName);

    public void UndefineDomain(string vmName) => _inner.UndefineDomain(vmName);

    /// <summary>Closes the connection unless a call on it was abandoned: closing under a call still inside libvirt would
    /// free what that call uses, so such a connection is left to the process's end.</summary>
    public void Dispose()
    {
        if (Volatile.Read(ref _abandoned) == 0) _inner.Dispose();
    }

    private T Read<T>(Func<T> read)
    {
        try { return Call(read, _stop); }
        catch (OperationCanceledException) { Volatile.Write(ref _abandoned, 1); throw; }
    }
}
