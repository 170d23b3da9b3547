using System.Runtime.Versioning;
using System.Xml.Linq;
using Gallium.Pci.Assignments;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;
using Gallium.Pci.Passthrough;
using Gallium.Pci.Testing;
using Gallium.Pci.Tests.Libvirt;

namespace Gallium.Pci.Tests.Assignments;

/// <summary>Add, Remove and Repair on a simulated host's devices and VMs in the real libvirtd: one plan per VM for every
/// device named, the large-BAR fix sized from what the VM will hold, the check made again under the lock.</summary>
[Collection(LibvirtdCollection.Name)]
[SupportedOSPlatform("linux")]
public sealed class VmChangeTests(LibvirtdFixture fixture)
{
    private const string H100 = StandardHost.ComputeGpu, Gpu = StandardHost.Gpu, GpuAudio = StandardHost.GpuAudio, Nic = StandardHost.FreeNic;

    [Fact]
    public void Add_of_a_large_BAR_GPU_puts_the_fix_in_before_the_hostdev_and_Remove_takes_both_out()
    {
        using var h = new VmHarness(fixture);
        string vm = h.DefineVm("h100");
        var change = h.Plan(VmDeviceAction.Add, vm, H100);
        Assert.Equal(MmioFixChange.Apply, change.Mmio!.Change);
        Assert.StartsWith("set the 64-bit MMIO window", change.Lines[0]);
        Assert.Contains("128 GiB", change.Lines[0]);

        var said = new List<string>();
        h.Run(change, said.Add);
        Assert.Equal([PciAddress.Parse(H100)], h.Held(vm));
        Assert.True(h.Mmio(vm).HasGalliumFix);
        // The fix and the hostdev arrive in one define: there is no moment with one and not the other, even if killed.
        var step = Assert.Single(said, l => l.StartsWith("step ", StringComparison.Ordinal));
        Assert.StartsWith("step 1/1: define VM", step);
        Assert.Contains("add hostdev 0000:02:00.0", step);
        Assert.Equal(1, h.Libvirt.Defines - 1);   // the VM's own define, then Gallium's one

        h.Do(VmDeviceAction.Remove, vm, H100);
        Assert.Empty(h.Held(vm));
        Assert.False(h.Mmio(vm).HasAnyFix);
    }

    [Fact]
    public void Remove_of_a_small_GPU_keeps_the_fix_the_large_one_still_needs()
    {
        using var h = new VmHarness(fixture);
        string vm = h.DefineVm("keep");
        h.Do(VmDeviceAction.Add, vm, H100);
        string fixWithH100 = MmioDomainXml.FixFingerprint(h.Definition(vm));
        h.Do(VmDeviceAction.Add, vm, Gpu);
        Assert.Equal(3, h.Held(vm).Count);

        var remove = h.Plan(VmDeviceAction.Remove, vm, Gpu);
        Assert.Equal(MmioFixChange.None, remove.Mmio!.Change);   // planned against the VM without Gallium's fix: H100 still needs one
        h.Run(remove);
        Assert.Equal([PciAddress.Parse(H100)], h.Held(vm));
        Assert.Equal(fixWithH100, MmioDomainXml.FixFingerprint(h.Definition(vm)));
        var view = AssignmentView.ReadAssignments([h.Libvirt.GetDomain(vm)], h.Inventory, () => h.Cpu);
        Assert.False(Assert.Single(view).MmioFixNeeded);
    }

    [Fact]
    public void Every_device_named_for_one_VM_is_sized_in_one_plan_and_Remove_shrinks_the_fix_to_what_the_rest_alone_gets()
    {
        using var h = new VmHarness(fixture);
        string both = h.DefineVm("both");
        var change = h.Plan(VmDeviceAction.Add, both, H100, Gpu, GpuAudio);
        Assert.Equal(2, change.Groups.Count);
        Assert.Equal(3, change.Functions.Count);
        Assert.Equal([PciAddress.Parse(Gpu), PciAddress.Parse(H100)], change.Mmio!.Plan!.Bars.Select(b => b.Device).Distinct().Order());
        Assert.Single(change.Lines, l => l.Contains("MMIO window", StringComparison.Ordinal));
        h.Run(change);

        h.Do(VmDeviceAction.Remove, both, H100);
        string alone = h.DefineVm("alone");
        h.Do(VmDeviceAction.Add, alone, Gpu);
        Assert.Equal(MmioDomainXml.FixFingerprint(h.Definition(alone)), MmioDomainXml.FixFingerprint(h.Definition(both)));
        Assert.Equal(MmioFixChange.None, h.Plan(VmDeviceAction.Repair, both).Mmio!.Change);
    }

    [Fact]
    public void Eight_128_GiB_GPUs_on_a_39_bit_host_are_refused_as_a_whole_naming_the_sum_the_limit_and_what_fits()
    {
        var topology = HostTopology.Create().PhysicalAddressBits(39).RootComplex("0000:00:00.0", 0x8086, 0x3e30, 0x060000, null);
        var gpus = Enumerable.Range(1, 8).Select(i => $"0000:{i:x2}:00.0").ToArray();
        for (int i = 1; i <= 8; i++)
            topology.RootPort($"0000:00:{i:x2}.0", i).Endpoint(gpus[i - 1], 0x10de, 0x2330, 0x030200, "nvidia")
                .Mem32Bar(0, 16 << 20).Mem64Bar(1, 128L << 30).Mem64Bar(3, 32 << 20);
        using var h = new VmHarness(fixture, topology);
        string vm = h.DefineVm("eight");
        string before = h.Definition(vm);

        var e = Assert.Throws<GalliumException>(() => h.Plan(VmDeviceAction.Add, vm, gpus).ThrowIfRefused());
        Assert.Equal(("MmioWindowBeyondHostAddressBits", ErrorKind.LimitsExceeded), (e.ErrorId, e.Kind));
        Assert.Contains("8 devices, 1 TiB", e.Message);                       // the sum
        Assert.Contains("39 physical address bits", e.Message);              // the limit
        Assert.Contains("512 GiB", e.Message);
        Assert.Contains("the first 2 (0000:01:00.0, 0000:02:00.0) would fit", e.Message);  // what would make it fit (TCG: only the guest's bits bound it)
        Assert.Contains("at least", e.RecommendedAction);                    // ... or a host with more address bits
        Assert.Equal(before, h.Definition(vm));
        Assert.Equal(1, h.Libvirt.Defines);   // the VM's own define only

        // The two that fit are what the real run then does.
        h.Do(VmDeviceAction.Add, vm, gpus[0], gpus[1]);
        Assert.Equal([PciAddress.Parse(gpus[0]), PciAddress.Parse(gpus[1])], h.Held(vm).Order());
    }

    [Fact]
    public void Repair_applies_the_fix_to_a_VM_given_a_GPU_by_hand_then_finds_nothing_to_do_and_takes_a_leftover_fix_out()
    {
        using var h = new VmHarness(fixture);
        string vm = h.DefineVm("byhand");
        h.Libvirt.AttachDeviceToConfig(vm, DomainXml.BuildHostdev(PciAddress.Parse(H100)));
        Assert.Equal(MmioFixChange.Apply, h.Do(VmDeviceAction.Repair, vm).Mmio!.Change);
        Assert.True(h.Mmio(vm).HasGalliumFix);
        int defines = h.Libvirt.Defines;
        Assert.True(h.Do(VmDeviceAction.Repair, vm).IsNoOp);
        Assert.Equal(defines, h.Libvirt.Defines);

        // The GPU taken out by hand, the fix stays behind: Repair takes out exactly what Gallium put in.
        h.Libvirt.DetachDeviceFromConfig(vm, DomainXml.BuildDetach(PciAddress.Parse(H100)));
        Assert.Equal(MmioFixChange.Remove, h.Do(VmDeviceAction.Repair, vm).Mmio!.Change);
        Assert.False(h.Mmio(vm).HasAnyFix);
    }

    [Fact]
    public void A_device_assigned_elsewhere_after_planning_is_refused_under_the_lock_and_the_VM_is_untouched()
    {
        using var h = new VmHarness(fixture);
        string a = h.DefineVm("a"), b = h.DefineVm("b");
        var confirmed = h.Plan(VmDeviceAction.Add, a, Nic);    // as at a -Confirm prompt
        Assert.Empty(confirmed.Refusals);
        h.Do(VmDeviceAction.Add, b, Nic);                       // another command gets in first
        var done = h.Run(confirmed);
        var refusal = Assert.Single(done.Refusals);
        Assert.Equal("PciDeviceAssigned", refusal.ErrorId);
        Assert.Contains(b, refusal.Message);
        Assert.Empty(h.Held(a));
        Assert.Equal([PciAddress.Parse(Nic)], h.Held(b));
    }

    [Fact]
    public void A_device_disabled_after_planning_is_refused_under_the_lock()
    {
        using var h = new VmHarness(fixture);
        string vm = h.DefineVm("disabled");
        var confirmed = h.Plan(VmDeviceAction.Add, vm, Nic);
        var disable = new PassthroughPlanner(h.Context, new LibvirtAssignmentLookup(() => LibvirtConnection.Open(fixture.Uri, readOnly: true)))
            .PlanDisable(PciAddress.Parse(Nic));
        new PlanRunner(h.Context).Run(disable);
        Assert.Equal("e1000e", h.Kernel.DriverOf(Nic));
        Assert.Equal("PciDeviceNotEnabled", Assert.Single(h.Run(confirmed).Refusals).ErrorId);
        Assert.Empty(h.Held(vm));
    }

    [Fact]
    public void A_VM_started_after_planning_is_VmNotStopped_under_the_lock()
    {
        using var h = new VmHarness(fixture);
        string vm = h.DefineVm("started", uefi: false);
        var confirmed = h.Plan(VmDeviceAction.Add, vm, Nic);
        h.Libvirt.StartDomain(vm, paused: true);
        try { Assert.Equal("VmNotStopped", Assert.Throws<VmNotStoppedException>(() => h.Run(confirmed)).ErrorId); }
        finally { h.Libvirt.DestroyDomain(vm); }
        Assert.Empty(h.Held(vm));
    }

    [Fact]
    public void A_failed_hostdev_attach_undoes_the_root_port_added_before_it_and_says_which_step()
    {
        using var h = new VmHarness(fixture);
        string vm = h.DefineVm("fails");
        string before = h.Definition(vm);
        var change = h.Plan(VmDeviceAction.Add, vm, Nic);
        Assert.False(change.ChangesMmio);   // no 64-bit BAR: libvirt's per-device calls, one step each
        h.Libvirt.FailEdit = xml => xml.StartsWith("<hostdev", StringComparison.Ordinal);
        var e = Assert.Throws<VmDeviceChangeFailedException>(() => h.Run(change));
        Assert.True(e.RolledBack);
        Assert.Contains(Nic, e.Step);
        Assert.Equal(before, h.Definition(vm));
    }
}
