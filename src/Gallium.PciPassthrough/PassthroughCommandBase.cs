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

    /// <summary>The host the addresses were read on: a device from another session binds its Host here, so one read on another
    /// host is refused (PciDeviceNotOnThisHost) instead of changing this host's device in that slot.</summary>
    [Parameter(ParameterSetName = AddressSet, ValueFromPipelineByPropertyName = true)]
    [Alias("Host")]
    public PSObject? SourceHost { get; set; }

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
    private DeviceInventory? _inventory;
    private DeviceInventory Inventory => _inventory ??= NewInventory();

    private bool IsOfThisHost(Action check)
    {
        try { check(); return true; }
        catch (PciDeviceNotOnThisHostException e) { WriteError(e); return false; }
    }
    private PassthroughPlanner? _planner;
    private PlanRunner? _runner;

    /// <summary>An Enable or Disable an earlier process left unfinished (killed, powered off) is repaired before this
    /// command plans anything, so nothing is planned from a half-done group; -WhatIf says it would be, and a declined
    /// -Confirm stops the command (the change itself would repair it first).</summary>
    protected override void BeginProcessing()
    {
        var (unfinished, unreadable) = NewInventory().ReadUnfinishedChanges();
        if (unreadable.Count > 0) ThrowTerminatingError(unreadable[0]);
        if (unfinished.Count == 0) return;
        bool whatIf = false;
        foreach (var change in unfinished)
        {
            string line = $"Repair IOMMU group {change.IommuGroup}: its {change.Direction} (PID {change.ProcessId}, {change.Started.UtcDateTime:u}) "
                + "was interrupted; return the group to how it was before it";
            string question = $"{change}. This command first returns the group to how it was before that change. Continue?";
            if (ShouldProcess(line, question, "Repair an interrupted passthrough change", out ShouldProcessReason reason)) continue;
            if (reason != ShouldProcessReason.WhatIf) ThrowTerminatingError(new UnfinishedChangeNotRepairedException(change));
            whatIf = true;
        }
        if (whatIf) return;
        if (!HostContext.Identity.IsRoot) ThrowTerminatingError(new RootRequiredException($"IOMMU group {unfinished[0].IommuGroup}"));
        var say = new Interruption(WriteVerbose, StopToken, WriteWarning);
        try
        {
            using var change = HostChange.Begin(HostContext, PlanRunner.DefaultLockTimeout, say);
        }
        catch (GalliumException e) { ThrowTerminatingError(e); }
        // A repair always finishes; a stop that came meanwhile still ends the command once it has.
        if (say.StopRequested) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(say.Cause);
    }

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
            // An object names a device on a host: one read elsewhere (CliXml, remoting) is refused, not applied to this slot.
            case DeviceSet:
                foreach (var d in InputObject)
                    if (IsOfThisHost(() => DeviceOrigin.Check(d, Inventory))) yield return d.Address;
                break;
            case GroupSet:
                foreach (var g in IommuGroup)
                    if ((g.Endpoints.FirstOrDefault() ?? g.Devices.FirstOrDefault()) is { } member && IsOfThisHost(() => DeviceOrigin.Check(g, Inventory)))
                        yield return member.Address;
                break;
            default:
                foreach (var a in ParseAddresses(Address))
                    if (IsOfThisHost(() => DeviceOrigin.Check(a, PciPassthrough.SourceHost.From(SourceHost), Inventory))) yield return a;
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
        if (plan.Direction == PassthroughDirection.Enable) WriteCaveats(plan.IommuGroup.Caveats);  // issue 14: before -WhatIf/-Confirm
        if (!ShouldProcessGroup(plan))
        {
            Initramfs(plan, changeRan: false);
            return;
        }
        _runner ??= new PlanRunner(HostContext);
        int total = plan.Steps.Count, done = 0;
        var progress = new ProgressRecord(1, $"{Action}: IOMMU group {group}", "Starting") { PercentComplete = 0 };
        // Every callback below may throw once the pipeline stops; Interruption turns that into a stop request the runner
        // acts on between steps (undo, or finish), never between a kernel write and its undo.
        var say = new Interruption(message =>
        {
            WriteVerbose(message);
            if (total > 4)
            {
                progress.StatusDescription = message;
                progress.PercentComplete = Math.Min(99, 100 * ++done / total);
                WriteProgress(progress);
            }
        }, StopToken, WriteWarning);
        try { _runner.Run(plan, say); }
        catch (ChangeInterruptedException e) { EndInterrupted(e); }
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
