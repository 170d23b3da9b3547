using System.Runtime.Versioning;
using Gallium.Pci.Host;
using Gallium.Pci.Passthrough;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Passthrough;

/// <summary>What the planner decides and refuses, before anything changes.</summary>
[SupportedOSPlatform("linux")]
public sealed class PassthroughPlannerTests
{
    private static PciAddress A(string s) => PciAddress.Parse(s);

    [Fact]
    public void Enable_plans_the_whole_group_with_one_whatif_line_per_device()
    {
        using var host = new SimHost();
        var plan = host.Planner.PlanEnable(A(StandardHost.GpuAudio));

        Assert.Equal(PassthroughDirection.Enable, plan.Direction);
        Assert.Equal(host.Kernel.GroupOf(StandardHost.Gpu), plan.IommuGroup.Id);
        Assert.False(plan.IsNoOp);
        Assert.Equal([StandardHost.Gpu, StandardHost.GpuAudio], plan.Changes.Select(c => c.Address.ToString()).ToArray());
        Assert.All(plan.Changes, c => Assert.Equal(DeviceChangeKind.ToVfioPci, c.Kind));
        if (host.Context.PciIdsPath is null)
        {
            Assert.Equal("0000:01:00.0 [10de:2684] (class 030000): nvidia -> vfio-pci", plan.Changes[0].Description);
        }
        else
        {
            Assert.Equal("0000:01:00.0 NVIDIA Corporation AD102 [GeForce RTX 4090] (VGA compatible controller): nvidia -> vfio-pci", plan.Changes[0].Description);
            Assert.Equal("0000:01:00.1 NVIDIA Corporation AD102 High Definition Audio Controller (Audio device): snd_hda_intel -> vfio-pci", plan.Changes[1].Description);
        }
        // Overrides first for the whole group, then unbind/probe/verify per device, the /dev/vfio check, then persistence.
        Assert.Equal(
            [StepKind.SetOverride, StepKind.SetOverride,
             StepKind.Unbind, StepKind.Probe, StepKind.Verify, StepKind.Unbind, StepKind.Probe, StepKind.Verify,
             StepKind.Verify, StepKind.Persist, StepKind.Persist, StepKind.Persist, StepKind.Persist, StepKind.Persist],
            plan.Steps.Select(s => s.Kind).ToArray());
        Assert.Equal("unbind 0000:01:00.0 from nvidia", plan.Steps[2].Description);
        Assert.Null(plan.Steps[8].Device);  // the /dev/vfio/N check is group-wide
        Assert.True(plan.NeedsVfioPci);
        Assert.Equal(0, host.Kernel.WriteCount);  // planning writes nothing
    }

    [Fact]
    public void Bridges_in_the_group_stay_where_they_are()
    {
        using var host = new SimHost();
        var plan = host.Planner.PlanEnable(A(StandardHost.LegacyNic));
        var bridge = Assert.Single(plan.Changes, c => c.Address.ToString() == StandardHost.PciBridge);
        Assert.Equal(DeviceChangeKind.Stays, bridge.Kind);
        Assert.EndsWith(": stays without a driver", bridge.Description);
        Assert.DoesNotContain(plan.Steps, s => s.Device?.ToString() == StandardHost.PciBridge);
        Assert.Equal(2, plan.Changes.Count(c => c.Kind == DeviceChangeKind.ToVfioPci));
    }

    [Fact]
    public void A_root_port_sharing_the_group_stays_on_pcieport()
    {
        using var host = new SimHost(build: dir => HostTopology.Create()
            .RootComplex("0000:00:00.0", 0x8086, 0x3e30, 0x060000, null)
            .RootPort("0000:00:01.0", 0x01).Acs(false)
            .Endpoint("0000:01:00.0", 0x10de, 0x2684, 0x030000, "nvidia").BootVga(false)
            .Build(dir));
        var plan = host.Planner.PlanEnable(A("0000:01:00.0"));
        var port = Assert.Single(plan.Changes, c => c.Device.IsBridge);
        Assert.Equal("0000:00:01.0", port.Address.ToString());
        Assert.EndsWith(": stays on pcieport", port.Description);
        Assert.Equal("pcieport", port.ToDriver);
    }

    [Fact]
    public void Naming_a_bridge_is_refused()
    {
        using var host = new SimHost();
        var e = Assert.Throws<PciDeviceIsBridgeException>(() => host.Planner.PlanEnable(A(StandardHost.PciBridge)));
        Assert.Equal("PciDeviceIsBridge", e.ErrorId);
        Assert.Equal(ErrorKind.InvalidOperation, e.Kind);
    }

    [Fact]
    public void A_missing_device_is_PciDeviceNotFound()
    {
        using var host = new SimHost();
        var e = Assert.Throws<PciDeviceNotFoundException>(() => host.Planner.PlanEnable(A("0000:0f:00.0")));
        Assert.Equal("0000:0f:00.0", e.Target);
        Assert.Throws<PciDeviceNotFoundException>(() => host.Planner.PlanDisable(A("0000:0f:00.0")));
    }

    [Fact]
    public void Not_root_is_refused_before_anything_else()
    {
        using var host = new SimHost(root: false);
        var e = Assert.Throws<RootRequiredException>(() => host.Planner.PlanEnable(A(StandardHost.Gpu)));
        Assert.Equal("RootRequired", e.ErrorId);
        Assert.Equal(ErrorKind.PermissionDenied, e.Kind);
        Assert.Throws<RootRequiredException>(() => host.Planner.PlanDisable(A(StandardHost.Gpu)));
        Assert.Equal(0, host.Kernel.WriteCount);
    }

    [Fact]
    public void A_runner_that_is_not_root_refuses_a_plan_before_anything_changes()
    {
        using var host = new SimHost();
        var plan = host.Planner.PlanEnable(A(StandardHost.FreeNic));
        var runner = new PlanRunner(host.Kernel.CreateContext(isRoot: false));
        Assert.Throws<RootRequiredException>(() => runner.Run(plan));
        Assert.Equal(0, host.Kernel.WriteCount);
        Assert.Empty(host.Files());
    }

    [Fact]
    public void Iommu_off_is_refused_with_the_readiness_remedy()
    {
        using var host = new SimHost(build: SimulatedHosts.IommuOff);
        var e = Assert.Throws<IommuNotEnabledException>(() => host.Planner.PlanEnable(A(StandardHost.Gpu)));
        Assert.Equal("IommuNotEnabled", e.ErrorId);
        Assert.Equal(ErrorKind.NotEnabled, e.Kind);
        string? remedy = new ReadinessProbe(host.Context).Probe().Remedy;
        Assert.False(string.IsNullOrEmpty(remedy));
        Assert.Equal(remedy, e.RecommendedAction);
        Assert.Contains("intel_iommu", e.RecommendedAction);
    }

    [Fact]
    public void A_physical_function_with_virtual_functions_is_refused_and_so_is_its_group()
    {
        using var host = new SimHost();
        var e = Assert.Throws<PciDeviceHasVirtualFunctionsException>(() => host.Planner.PlanEnable(A(StandardHost.SriovPf)));
        Assert.Equal("PciDeviceHasVirtualFunctions", e.ErrorId);
        Assert.Equal(4, e.VirtualFunctionCount);
        Assert.Equal(StandardHost.SriovPf, e.Address.ToString());
        if (host.Kernel.GroupOf(StandardHost.SriovPf2) == host.Kernel.GroupOf(StandardHost.SriovPf))
            Assert.Equal(StandardHost.SriovPf, Assert.Throws<PciDeviceHasVirtualFunctionsException>(() => host.Planner.PlanEnable(A(StandardHost.SriovPf2))).Address.ToString());
        // A VF is its own group and goes through.
        var vf = host.Planner.PlanEnable(A(StandardHost.SriovVf0));
        Assert.Equal(DeviceChangeKind.ToVfioPci, Assert.Single(vf.Changes).Kind);
    }

    [Theory]
    [InlineData(StandardHost.HostNic, "default route")]
    [InlineData(StandardHost.Nvme, "mounted on /")]
    [InlineData(StandardHost.OnboardVga, "framebuffer console")]
    public void Host_critical_devices_are_refused_unless_explicitly_allowed(string address, string why)
    {
        using var host = new SimHost();
        var e = Assert.Throws<PciDeviceHostCriticalException>(() => host.Planner.PlanEnable(A(address)));
        Assert.Equal("PciDeviceHostCritical", e.ErrorId);
        Assert.Equal(ErrorKind.InvalidOperation, e.Kind);
        Assert.Contains(address, e.Message);
        Assert.Contains(why, e.Message);
        Assert.Contains(e.Dependencies, d => d.Address.ToString() == address && d.Reason.Contains(why, StringComparison.Ordinal));

        var plan = host.Planner.PlanEnable(A(address), allowHostCritical: true);
        Assert.Contains(plan.HostCriticalAllowed, d => d.Address.ToString() == address);
        host.Runner.Run(plan);
        Assert.Equal("vfio-pci", host.Driver(address));
    }

    [Fact]
    public void A_kernel_without_vfio_pci_is_refused_at_planning()
    {
        using var host = new SimHost(new HostOptions { VfioPciLoaded = false, VfioPciAvailable = false });
        var e = Assert.Throws<VfioPciUnavailableException>(() => host.Planner.PlanEnable(A(StandardHost.FreeNic)));
        Assert.Equal(ErrorKind.NotInstalled, e.Kind);
    }

    [Fact]
    public void Disable_of_a_group_a_vm_references_is_refused_naming_the_vms()
    {
        using var host = new SimHost();
        host.Enable(StandardHost.Gpu);
        host.Assignments.Assign("win11", StandardHost.GpuAudio);
        host.Assignments.Assign("render", StandardHost.Gpu);
        host.Assignments.Assign("other", StandardHost.FreeNic);
        var before = host.Kernel.Snapshot();
        var e = Assert.Throws<IommuGroupAssignedException>(() => host.Planner.PlanDisable(A(StandardHost.Gpu)));
        Assert.Equal("IommuGroupAssigned", e.ErrorId);
        Assert.Equal(ErrorKind.ResourceBusy, e.Kind);
        Assert.Equal(["render", "win11"], e.Vms);
        Assert.Contains("render, win11", e.Message);
        Assert.Equal(before, host.Kernel.Snapshot());
    }

    [Fact]
    public void Disable_plans_every_member_back_to_the_host()
    {
        using var host = new SimHost();
        host.Enable(StandardHost.Gpu);
        var plan = host.Planner.PlanDisable(A(StandardHost.Gpu));
        Assert.Equal(PassthroughDirection.Disable, plan.Direction);
        Assert.All(plan.Changes, c => Assert.Equal(DeviceChangeKind.ToHostDriver, c.Kind));
        Assert.EndsWith(": vfio-pci -> host driver", plan.Changes[0].Description);
        Assert.Equal(
            [StepKind.ClearOverride, StepKind.ClearOverride,
             StepKind.Unbind, StepKind.Probe, StepKind.Verify, StepKind.Unbind, StepKind.Probe, StepKind.Verify,
             StepKind.RemovePersisted, StepKind.RemovePersisted, StepKind.RemovePersisted, StepKind.RemovePersisted],
            plan.Steps.Select(s => s.Kind).ToArray());
        Assert.False(plan.NeedsVfioPci);
    }

    [Fact]
    public void Disable_of_a_group_on_host_drivers_is_a_no_op()
    {
        using var host = new SimHost();
        var plan = host.Planner.PlanDisable(A(StandardHost.FreeNic));
        Assert.True(plan.IsNoOp);
        Assert.Equal(DeviceChangeKind.Stays, Assert.Single(plan.Changes).Kind);
        Assert.EndsWith(": stays on e1000e", plan.Changes[0].Description);
    }
}
