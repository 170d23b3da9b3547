using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using Gallium.Pci;
using Gallium.Pci.Host;

namespace Gallium.PciPassthrough.Completers;

/// <summary>Completes -Address with the host's PCI addresses; the tooltip names the device and its driver.</summary>
public class PciAddressCompleter : IArgumentCompleter
{
    /// <summary>Which devices to offer; the Add cmdlet's completer offers only devices enabled for passthrough.</summary>
    protected virtual bool Offer(PciDevice device) => true;

    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        string word = wordToComplete.Trim('\'', '"');
        var pattern = WildcardPattern.Get(word + "*", WildcardOptions.IgnoreCase);
        IReadOnlyList<PciDevice> devices;
        try
        {
            var host = CompletionHost.Resolve();
            devices = new DeviceInventory(host, NameDatabases.For(host.PciIdsPath)).ReadAll();
        }
        catch (Exception) { yield break; } // completion never throws at the user
        foreach (var d in devices)
        {
            if (!Offer(d)) continue;
            string full = d.Address.ToString();
            if (!pattern.IsMatch(full) && !(d.Address.Domain == 0 && pattern.IsMatch(full[5..]))) continue;
            string tip = $"{d.ClassName}: {d.VendorName} {d.DeviceName} [{d.Driver ?? "no driver"}]";
            yield return new CompletionResult(full, full, CompletionResultType.ParameterValue, tip);
        }
    }
}

/// <summary>Completers run outside a cmdlet; they find the host the same way the cmdlets do.</summary>
internal static class CompletionHost
{
    public static HostContext Resolve()
    {
        using var ps = PowerShell.Create(RunspaceMode.CurrentRunspace);
        var value = ps.AddCommand("Get-Variable").AddParameter("Name", GalliumCmdlet.HostContextVariable)
            .AddParameter("ValueOnly").AddParameter("ErrorAction", "Ignore").Invoke().FirstOrDefault()?.BaseObject;
        return value as HostContext ?? HostContext.FromEnvironment();
    }
}
