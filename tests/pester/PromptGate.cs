// Hosts and hooks for the race and stop tests (VmRaces.Tests.ps1, VmPciDevice.Tests.ps1), loaded with Add-Type.
//  - GatedHost: a PowerShell host whose user sits at a -Confirm prompt until the test lets go, so another command can run
//    "while Add waits at its prompt" deterministically; it also keeps the prompts and the warnings the host was shown.
//    (AnsweringHost.cs is the host that answers at once.)
//  - StopHook.AtVerbose: stops a pipeline (PowerShell.BeginStop, what Ctrl+C does) at its k-th verbose record, on the
//    pipeline's own thread, as the command writes it.
using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Security;
using System.Threading;

namespace Gallium.PesterSupport
{
    public sealed class GatedHost : PSHost
    {
        private readonly GatedUI _ui = new GatedUI();
        public GatedUI Gate => _ui;
        public override CultureInfo CurrentCulture => CultureInfo.InvariantCulture;
        public override CultureInfo CurrentUICulture => CultureInfo.InvariantCulture;
        public override Guid InstanceId { get; } = Guid.NewGuid();
        public override string Name => "GatedHost";
        public override PSHostUserInterface UI => _ui;
        public override Version Version => new Version(1, 0);
        public override void EnterNestedPrompt() => throw new NotSupportedException();
        public override void ExitNestedPrompt() => throw new NotSupportedException();
        public override void NotifyBeginApplication() { }
        public override void NotifyEndApplication() { }
        public override void SetShouldExit(int exitCode) { }
    }

    public sealed class GatedUI : PSHostUserInterface
    {
        private readonly ManualResetEventSlim _prompted = new ManualResetEventSlim(false);
        private readonly ManualResetEventSlim _released = new ManualResetEventSlim(false);
        private string _answer = "No";
        public List<string> Prompts { get; } = new List<string>();
        public List<string> Warnings { get; } = new List<string>();
        public override PSHostRawUserInterface RawUI => null!;

        /// <summary>Waits until the command is at its prompt; false when it never got there.</summary>
        public bool WaitForPrompt(int milliseconds) => _prompted.Wait(milliseconds);
        /// <summary>The user answers (a choice label: Yes, No, ...).</summary>
        public void Answer(string label) { _answer = label; _released.Set(); }

        public override int PromptForChoice(string caption, string message, Collection<ChoiceDescription> choices, int defaultChoice)
        {
            lock (Prompts) Prompts.Add(caption + ": " + message);
            _prompted.Set();
            if (!_released.Wait(TimeSpan.FromMinutes(5))) throw new TimeoutException("the test never answered the prompt");
            for (int i = 0; i < choices.Count; i++)
                if (choices[i].Label.Replace("&", "").Equals(_answer, StringComparison.OrdinalIgnoreCase)) return i;
            throw new InvalidOperationException("No choice labelled " + _answer);
        }

        public override Dictionary<string, PSObject> Prompt(string caption, string message, Collection<FieldDescription> descriptions) => throw new NotSupportedException(message);
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName) => throw new NotSupportedException();
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName, PSCredentialTypes allowedCredentialTypes, PSCredentialUIOptions options) => throw new NotSupportedException();
        public override string ReadLine() => throw new NotSupportedException();
        public override SecureString ReadLineAsSecureString() => throw new NotSupportedException();
        public override void Write(string value) { }
        public override void Write(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value) { }
        public override void WriteLine(string value) { }
        public override void WriteErrorLine(string value) { }
        public override void WriteDebugLine(string message) { }
        public override void WriteProgress(long sourceId, ProgressRecord record) { }
        public override void WriteVerboseLine(string message) { }
        public override void WriteWarningLine(string message) { lock (Warnings) Warnings.Add(message); }
    }

    public static class StopHook
    {
        /// <summary>Calls BeginStop when the k-th verbose record is written; returns a counter of the records seen.</summary>
        public static Counter AtVerbose(PowerShell ps, int k)
        {
            var seen = new Counter();
            ps.Streams.Verbose.DataAdded += (sender, e) =>
            {
                if (Interlocked.Increment(ref seen.Value) == k) ps.BeginStop(null, null);
            };
            return seen;
        }
    }

    public sealed class Counter
    {
        public int Value;
    }
}
