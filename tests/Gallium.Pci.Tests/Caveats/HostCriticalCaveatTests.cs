using System.Runtime.Versioning;
using Gallium.Pci.Host;
using Gallium.Pci.Passthrough;
using Gallium.Pci.Testing;
using Gallium.Pci.Tests.Passthrough;

namespace Gallium.Pci.Tests.Caveats;

/// <summary>Refuse what breaks the host: the chipset group and a BAR a firmware framebuffer holds are host-critical
/// (-AllowHostCritical overrides), and nothing changes when Enable is refused.</summary>
[SupportedOSPlatform("linux")]
public sealed class HostCriticalCaveatTests
{
    private static PciAddress A(string s) => PciAddress.Parse(s);

    [Fact]
    public void Enable_of_the_chipset_group_is_refused_naming_host_bridge_lpc_and_smbus_and_changes_nothing()
    {
        using var host = new SimHost();
        var before = host.Kernel.Snapshot();

        var e = Assert.Throws<PciDeviceHostCriticalException>(() => host.Enable(StandardHost.Smbus));

        Assert.Equal("PciDeviceHostCritical", e.ErrorId);
        Assert.Equal(ErrorKind.InvalidOperation, e.Kind);
        Assert.Equal([A(StandardHost.HostBridge), A(StandardHost.Lpc), A(StandardHost.Smbus)], e.Dependencies.Select(d => d.Address).Order());
        Assert.Contains("host bridge", e.Message);
        Assert.Contains("ISA/LPC bridge", e.Message);
        Assert.Contains("SMBus controller", e.Message);
        Assert.Contains("-AllowHostCritical", e.Message);
        Assert.Equal(before, host.Kernel.Snapshot());
        Assert.Equal(0, host.Kernel.WriteCount);
    }

    [Fact]
    public void AllowHostCritical_plans_the_chipset_group_and_the_plan_carries_its_caveats()
    {
        using var host = new SimHost();
        var plan = host.Planner.PlanEnable(A(StandardHost.Lpc), allowHostCritical: true);

        Assert.Equal(3, plan.HostCriticalAllowed.Count);
        Assert.Equal(3, plan.IommuGroup.Caveats.OfType<ChipsetFunctionCaveat>().Count());
    }

    [Fact]
    public void A_GPU_whose_BAR_a_firmware_framebuffer_holds_is_refused_with_the_kernel_parameter_as_the_remedy()
    {
        using var host = new SimHost(build: root => DeviceCaveatTests.GpuWithFramebuffer("efifb").Build(root));
        var before = host.Kernel.Snapshot();

        var e = Assert.Throws<PciDeviceHostCriticalException>(() => host.Enable("0000:01:00.1"));

        var fb = Assert.Single(e.Dependencies);
        Assert.Equal(A("01:00.0"), fb.Address);
        Assert.Contains("efifb", fb.Reason);
        Assert.Contains("BAR 1", fb.Reason);
        Assert.Contains("video=efifb:off", e.RecommendedAction);
        Assert.Contains("initcall_blacklist=sysfb_init", e.RecommendedAction);
        Assert.Equal(before, host.Kernel.Snapshot());

        var plan = host.Enable("0000:01:00.1", allowHostCritical: true);   // the admin has another console
        Assert.Equal("vfio-pci", host.Driver("01:00.0"));
        Assert.Contains(plan.IommuGroup.Caveats, c => c is FirmwareFramebufferCaveat { Holder: "efifb", BarIndex: 1 });
    }

    [Fact]
    public void A_device_without_host_critical_caveats_is_not_refused_and_keeps_its_warnings()
    {
        using var host = new SimHost();
        var plan = host.Planner.PlanEnable(A(StandardHost.Gpu));
        Assert.Empty(plan.HostCriticalAllowed);
        Assert.Equal(2, plan.IommuGroup.Caveats.OfType<BusResetOnlyCaveat>().Count());
    }

    [Fact]
    public void Host_dependencies_find_chipset_and_framebuffer_functions_host_wide_and_among_a_few()
    {
        using var host = new SimHost(build: root => DeviceCaveatTests.GpuWithFramebuffer("BOOTFB").Build(root));
        var deps = new HostDependencies(host.Context);

        var all = deps.Find();
        Assert.Contains(all, d => d.Address == A("00:00.0") && d.Reason.Contains("host bridge", StringComparison.Ordinal));
        var fb = Assert.Single(all, d => d.Address == A("01:00.0"));
        Assert.Contains("BOOTFB", fb.Reason);
        Assert.Equal($"Boot with initcall_blacklist=sysfb_init on the kernel command line ({ReadinessProbe.GrubHowTo}) to free it.", fb.Remedy);
        Assert.Empty(deps.Among([A("01:00.1")]));
        Assert.Single(deps.Among([A("01:00.0"), A("01:00.1")]));
    }
}
