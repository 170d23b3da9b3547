using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;

namespace Gallium.Pci.Assignments;

/// <summary>Carries out a <see cref="VmDeviceChange"/>: each hostdev through libvirt's atomic attach/detach on the
/// persistent definition (REFERENCE §5.2; never a re-defined whole XML, so a concurrent edit by someone else is kept),
/// then the MMIO fix. A failed step undoes the earlier ones, so the definition is never left half-edited.</summary>
public sealed class VmDeviceRunner(ILibvirt libvirt)
{
    public void Run(VmDeviceChange change, Action<string>? verbose = null)
    {
        verbose ??= _ => { };
        // The VM may have been started since planning: re-check right before the first edit.
        var domain = libvirt.GetDomain(change.VmName);
        if (change.Action != VmDeviceAction.Repair && domain.State != VmState.ShutOff)
            throw new VmNotStoppedException(domain.Name, domain.State);

        var undo = new Stack<(string What, Action Undo)>();
        string step = "";
        try
        {
            foreach (var edit in change.Edits)
            {
                step = edit.Description;
                verbose($"libvirt: {step}");
                if (change.Action == VmDeviceAction.Remove)
                {
                    libvirt.DetachDeviceFromConfig(change.VmName, edit.Xml);
                    undo.Push((edit.Description, () => libvirt.AttachDeviceToConfig(change.VmName, edit.Xml)));
                }
                else
                {
                    libvirt.AttachDeviceToConfig(change.VmName, edit.Xml);
                    undo.Push((edit.Description, () => libvirt.DetachDeviceFromConfig(change.VmName, edit.Xml)));
                }
            }
            if (change.AppliesMmioFix || change.RemovesMmioFix)
            {
                step = change.AppliesMmioFix ? "set the 64-bit MMIO window" : "remove the 64-bit MMIO window settings";
                // <cpu> and <qemu:commandline> have no atomic API: read the definition as it is now, edit only our
                // elements, define it, and keep the previous definition to put back on failure.
                string before = libvirt.GetDomain(change.VmName).Xml;
                string after = change.AppliesMmioFix ? MmioDomainXml.ApplyFix(before, change.Mmio!) : MmioDomainXml.RemoveFix(before);
                if (after != before)
                {
                    verbose($"libvirt: define VM '{change.VmName}' to {step}");
                    libvirt.DefineDomain(after);
                    undo.Push((step, () => libvirt.DefineDomain(before)));
                }
            }
        }
        catch (GalliumException e)
        {
            var leftovers = new List<string>();
            while (undo.Count > 0)
            {
                var (what, action) = undo.Pop();
                try { verbose($"libvirt: undo: {what}"); action(); }
                catch (GalliumException u) { leftovers.Add($"{what} ({u.Message})"); }
            }
            throw new VmDeviceChangeFailedException(change.VmName, step, e, leftovers.Count == 0, leftovers);
        }
    }
}
