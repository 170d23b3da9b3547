using System.Runtime.ExceptionServices;

namespace Gallium.Pci;

/// <summary>Narration for a runner that must never be thrown into between a change and its undo. The cmdlet's callback
/// (WriteVerbose, WriteProgress) throws when the pipeline stops (Ctrl+C, Select-Object -First, PowerShell.Stop()) or when
/// a stream's preference is Stop; that exception is kept here and read as a stop request, which the runner acts on at its
/// next step boundary (finish or roll back), never in the middle of a step. A cancelled token (StopProcessing) is one too.</summary>
public sealed class Interruption
{
    private readonly Action<string>? _narrate;
    private readonly Action<string>? _warn;
    private readonly CancellationToken _token;
    private ExceptionDispatchInfo? _cause;

    /// <param name="narrate">Hears every step (the cmdlet's WriteVerbose/WriteProgress).</param>
    /// <param name="token">Cancelled by the cmdlet's StopProcessing.</param>
    /// <param name="warn">Hears what the user must be told even without -Verbose (the cmdlet's WriteWarning).</param>
    public Interruption(Action<string>? narrate = null, CancellationToken token = default, Action<string>? warn = null)
    {
        _narrate = narrate;
        _token = token;
        _warn = warn;
    }

    /// <summary>Passes a message on; never throws. After a stop request, messages are dropped (the host is not listening).</summary>
    public void Say(string message)
    {
        if (_cause is not null || _narrate is null) return;
        try { _narrate(message); }
        catch (Exception e) when (e is not OutOfMemoryException) { _cause = ExceptionDispatchInfo.Capture(e); }
    }

    /// <summary>Passes a warning on; never throws (a throwing callback is a stop request, as for <see cref="Say"/>).</summary>
    public void Warn(string message)
    {
        if (_cause is not null || _warn is null) return;
        try { _warn(message); }
        catch (Exception e) when (e is not OutOfMemoryException) { _cause = ExceptionDispatchInfo.Capture(e); }
    }

    /// <summary>Whether the caller asked to stop: a narration callback threw, or the token was cancelled.</summary>
    public bool StopRequested => _cause is not null || _token.IsCancellationRequested;

    /// <summary>What stopped us: the callback's own exception (rethrown as it was, so the host's stop wins), else the cancellation.</summary>
    public Exception Cause => _cause?.SourceException ?? new OperationCanceledException("The operation was stopped.", _token);
}

/// <summary>A change to the host or to a VM was stopped part-way (Ctrl+C, a pipeline stop, a stream set to Stop) and the
/// runner either rolled it back to exactly how it began or, past the point of no return, finished it. <see cref="Cause"/> is
/// the stop itself: the cmdlet tells the user how the change ended, then rethrows the cause so the stop still wins.</summary>
public abstract class ChangeInterruptedException : GalliumException
{
    protected ChangeInterruptedException(string errorId, string message, object? target, Exception cause, bool rolledBack)
        : base(errorId, ErrorKind.OperationStopped, message, target, cause)
    {
        Cause = cause;
        RolledBack = rolledBack;
    }

    /// <summary>The stop request that interrupted the change.</summary>
    public Exception Cause { get; }
    /// <summary>True when the change was undone (the target is as it began); false when it was completed instead, or
    /// when the undo itself failed (then the message says what is left half-done).</summary>
    public bool RolledBack { get; }
    public override bool IsHostLevel => true;
}
