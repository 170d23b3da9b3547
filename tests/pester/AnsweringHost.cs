// A PowerShell host whose user "answers" confirmation prompts with a scripted choice, and records what was asked.
// Loaded with Add-Type by VmPciDevice.Tests.ps1 to prove Remove-GalliumVmPciDevice asks, and obeys Yes and No.
using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Security;

namespace Gallium.PesterSupport
{
    public sealed class AnsweringHost : PSHost
    {
        private readonly AnsweringUI _ui;
        public AnsweringHost(string answerLabel) { _ui = new AnsweringUI(answerLabel); }
        public List<string> Prompts => _ui.Prompts;
        /// <summary>Every line written to this host's UI (warnings prefixed "WARNING: "), e.g. by a cmdlet whose pipeline is stopping.</summary>
        public List<string> Lines => _ui.Lines;
        public override CultureInfo CurrentCulture => CultureInfo.InvariantCulture;
        public override CultureInfo CurrentUICulture => CultureInfo.InvariantCulture;
        public override Guid InstanceId { get; } = Guid.NewGuid();
        public override string Name => "AnsweringHost";
        public override PSHostUserInterface UI => _ui;
        public override Version Version => new Version(1, 0);
        public override void EnterNestedPrompt() => throw new NotSupportedException();
        public override void ExitNestedPrompt() => throw new NotSupportedException();
        public override void NotifyBeginApplication() { }
        public override void NotifyEndApplication() { }
        public override void SetShouldExit(int exitCode) { }
    }

    public sealed class AnsweringUI : PSHostUserInterface
    {
        private readonly string _answer;
        public AnsweringUI(string answerLabel) { _answer = answerLabel; }
        public List<string> Prompts { get; } = new List<string>();
        public List<string> Lines { get; } = new List<string>();
        public override PSHostRawUserInterface RawUI => null!;

        // ShouldProcess asks with the choices Yes, Yes to All, No, No to All, Suspend: pick the scripted one by label.
        public override int PromptForChoice(string caption, string message, Collection<ChoiceDescription> choices, int defaultChoice)
        {
            Prompts.Add(caption + ": " + message);
            for (int i = 0; i < choices.Count; i++)
                if (choices[i].Label.Replace("&", "").Equals(_answer, StringComparison.OrdinalIgnoreCase)) return i;
            throw new InvalidOperationException("No choice labelled " + _answer);
        }

        public override Dictionary<string, PSObject> Prompt(string caption, string message, Collection<FieldDescription> descriptions) => throw new NotSupportedException(message);
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName) => throw new NotSupportedException();
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName, PSCredentialTypes allowedCredentialTypes, PSCredentialUIOptions options) => throw new NotSupportedException();
        public override string ReadLine() => throw new NotSupportedException();
        public override SecureString ReadLineAsSecureString() => throw new NotSupportedException();
        public override void Write(string value) { lock (Lines) Lines.Add(value); }
        public override void Write(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value) { lock (Lines) Lines.Add(value); }
        public override void WriteLine(string value) { lock (Lines) Lines.Add(value); }
        public override void WriteErrorLine(string value) { lock (Lines) Lines.Add("ERROR: " + value); }
        public override void WriteDebugLine(string message) { }
        public override void WriteProgress(long sourceId, ProgressRecord record) { }
        public override void WriteVerboseLine(string message) { }
        public override void WriteWarningLine(string message) { lock (Lines) Lines.Add("WARNING: " + message); }
    }
}
