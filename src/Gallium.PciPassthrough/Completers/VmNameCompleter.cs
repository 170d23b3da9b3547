using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using Gallium.Pci.Libvirt;

namespace Gallium.PciPassthrough.Completers;

/// <summary>Completes -VmName with the VMs libvirt knows (at -Uri when given); the tooltip shows the state.</summary>
public sealed class VmNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        string word = wordToComplete.Trim('\'', '"');
        var pattern = WildcardPattern.Get(word + "*", WildcardOptions.IgnoreCase);
        IReadOnlyList<LibvirtDomain> domains;
        try
        {
            using var libvirt = CompletionHost.Resolve().Libvirt.Open(fakeBoundParameters["Uri"] as string, readOnly: true);
            domains = libvirt.ListDomains();
        }
        catch (Exception) { yield break; } // completion never throws at the user
        foreach (var d in domains.OrderBy(d => d.Name, StringComparer.Ordinal))
        {
            if (!pattern.IsMatch(d.Name)) continue;
            string text = d.Name.All(c => char.IsLetterOrDigit(c) || c is '-' or '_' or '.') ? d.Name : "'" + d.Name.Replace("'", "''") + "'";
            yield return new CompletionResult(text, d.Name, CompletionResultType.ParameterValue, $"{d.Name} ({d.State})");
        }
    }
}

/// <summary>Add-GalliumVmPciDevice offers only devices enabled for passthrough (on vfio-pci, in no VM yet).</summary>
public sealed class EnabledPciAddressCompleter : PciAddressCompleter
{
    protected override bool Offer(Gallium.Pci.PciDevice device) => device.PassthroughState == Gallium.Pci.PassthroughState.Enabled;
}
