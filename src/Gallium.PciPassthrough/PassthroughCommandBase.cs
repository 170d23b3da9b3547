using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Host;
using Gallium.Pci.Passthrough;
using Gallium.PciPassthrough.Completers;

namespace Gallium.PciPassthrough;

/// <summary>Shared shell of Enable/Disable-GalliumPciPassthrough: takes addresses, devices or groups, plans the whole
/// IOMMU group in the core, asks (one -WhatIf line per device, one -Confirm prompt per group), runs, and re-reads.</summary>
public abstract class PassthroughCommandBase : GalliumCmdlet
{
    protected const string AddressSet = "Address";
    protected const string DeviceSet = "InputObject";
    protected const string GroupSet = "IommuGroup";

    [Parameter(ParameterSetName = AddressSet, Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(PciAddressCompleter))]
    public string[] Address { get; set; } = [];

    [Parameter(ParameterSetName = DeviceSet, Mandatory = true, ValueFromPipeline = true)]
    [ValidateNotNullOrEmpty]
    public PciDevice[] InputObject { get; set; } = [];

    [Parameter(ParameterSetName = GroupSet, Mandatory = true, ValueFromPipeline = true)]
    [ValidateNotNullOrEmpty]
    public IommuGroup[] IommuGroup { get; set; } = [];

    /// <summary>Write the re-read devices of the group after the change.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>Regenerate the initramfs when the change makes it stale (it loads a member's host driver but lacks its
    /// record, or holds a record Disable removed). Without it the command warns and prints the exact command.</summary>
    [Parameter]
    public SwitchParameter UpdateInitramfs { get; set; }

    /// <summary>"Enable PCI passthrough" / "Disable PCI passthrough": the ShouldProcess action.</summary>
    protected abstract string Action { get; }
    protected abstract PassthroughPlan Plan(PassthroughPlanner planner, PciAddress address);
    protected abstract string NoOpMessage(PassthroughPlan plan);
    /// <summary>Who to ask whether VMs hold the group; Enable needs no one.</summary>
    protected virtual IAssignmentLookup Assignments => NoAssignments.Instance;

    private readonly HashSet<int> _groupsDone = [];
    private PassthroughPlanner? _planner;
    private PlanRunner? _runner;

    protected override void ProcessRecord()
    {
        foreach (var address in Targets())
        {
            try { Process(address); }
            catch (GalliumException e) when (e.IsHostLevel) { ThrowTerminatingError(e); }
            catch (GalliumException e) { WriteError(e); }
        }
    }

    private IEnumerable<PciAddress> Targets()
    {
        switch (ParameterSetName)
        {
            case DeviceSet:
                foreach (var d in InputObject) yield return d.Address;
                break;
            case GroupSet:
                foreach (var g in IommuGroup)
                    if ((g.Endpoints.FirstOrDefault() ?? g.Devices.FirstOrDefault()) is { } member) yield return member.Address;
                break;
            default:
                foreach (var a in ParseAddresses(Address)) yield return a;
                break;
        }
    }

    private void Process(PciAddress address)
    {
        _planner ??= new PassthroughPlanner(HostContext, Assignments, NameDatabases.For(HostContext.PciIdsPath));
        var plan = Plan(_planner, address);
        int group = plan.IommuGroup.Id;
        if (!_groupsDone.Add(group))
        {
            WriteVerbose($"IOMMU group {group} was already handled by this command ({address} is in it).");
            return;
        }
        if (plan.IsNoOp)
        {
            WriteVerbose(NoOpMessage(plan));
            Initramfs(plan, changeRan: true);
            if (PassThru) WriteGroup(group);
            return;
        }
        if (!ShouldProcessGroup(plan))
        {
            Initramfs(plan, changeRan: false);
            return;
        }
        _runner ??= new PlanRunner(HostContext);
        int total = plan.Steps.Count, done = 0;
        var progress = new ProgressRecord(1, $"{Action}: IOMMU group {group}", "Starting") { PercentComplete = 0 };
        _runner.Run(plan, message =>
        {
            WriteVerbose(message);
            if (total > 4)
            {
                progress.StatusDescription = message;
                progress.PercentComplete = Math.Min(99, 100 * ++done / total);
                WriteProgress(progress);
            }
        });
        if (total > 4) { progress.RecordType = ProgressRecordType.Completed; WriteProgress(progress); }
        Initramfs(plan, changeRan: true);
        if (PassThru) WriteGroup(group);
    }

    /// <summary>After the change (or under -WhatIf, for the change as planned): regenerate a stale initramfs on request,
    /// else say that it is stale and the exact command (REFERENCE §8.2).</summary>
    private void Initramfs(PassthroughPlan plan, bool changeRan)
    {
        var advice = new InitramfsCheck(HostContext).Check(plan);
        if (advice is null)
        {
            if (UpdateInitramfs) WriteVerbose($"IOMMU group {plan.IommuGroup.Id}: the initramfs needs no update.");
            return;
        }
        if (!UpdateInitramfs)
        {
            WriteWarning($"{advice.Reason} Regenerate it: {advice.Command} (or add -UpdateInitramfs).");
            return;
        }
        if (!changeRan || !ShouldProcess(advice.Image, $"Regenerate the initramfs ({advice.Command})")) return;
        WriteVerbose($"{advice.Reason} Running: {advice.Command}");
        if (HostContext.Initramfs.Update() is string failure)
            WriteError(new InitramfsUpdateFailedException(advice.Image, advice.Command, failure));
    }

    // -WhatIf: one "What if:" line per device of the group. -Confirm: one prompt per group, listing every device.
    private bool ShouldProcessGroup(PassthroughPlan plan)
    {
        var lines = plan.Changes.Select(c => $"{Action}: {c.Description}").ToArray();
        string warning = $"{Action} for IOMMU group {plan.IommuGroup.Id}? Every device of the group is affected:{Environment.NewLine}"
            + string.Join(Environment.NewLine, plan.Changes.Select(c => "  " + c.Description));
        if (ShouldProcess(lines[0], warning, Action, out ShouldProcessReason reason)) return true;
        if (reason == ShouldProcessReason.WhatIf)
            foreach (string line in lines.Skip(1)) ShouldProcess(line, warning, Action);
        return false;
    }

    private void WriteGroup(int id)
    {
        var group = NewInventory().ReadGroup(id);
        if (group is not null) WriteObject(group.Devices, enumerateCollection: true);
    }
}

/// <summary>Used where no assignment source applies (Enable never needs one).</summary>
internal sealed class NoAssignments : IAssignmentLookup
{
    public static NoAssignments Instance { get; } = new();
    public IReadOnlyList<string> VmsReferencing(IReadOnlyCollection<PciAddress> addresses) => [];
}
