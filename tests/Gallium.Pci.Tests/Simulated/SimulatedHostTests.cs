using Gallium.Pci.Assignments;
using Gallium.Pci.Host;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Simulated;

/// <summary>The presets of New-GalliumSimulatedHost are the hosts they say they are (issue 15).</summary>
public sealed class SimulatedHostTests
{
    private static DeviceInventory Inventory(SimulatedHost host) => new(host.Context, new PciIds(host.Context.PciIdsPath));

    [Fact]
    public void The_gpu_server_has_two_gpus_on_the_host_one_enabled_and_free_and_one_held_by_train_01_without_the_fix()
    {
        using var host = SimulatedHost.Create(SimulatedHostPreset.GpuServer);
        using var libvirt = host.Context.Libvirt.Open(null, readOnly: true);
        var devices = AssignmentView.Annotate(Inventory(host).ReadAll(), Gallium.Pci.Libvirt.AssignmentIndex.FromDomains(libvirt.ListDomains()));
        PassthroughState StateOf(string a) => devices.Single(d => d.Address.ToString() == a).PassthroughState;

        Assert.Equal(PassthroughState.Host, StateOf(GpuServerHost.Gpu0));
        Assert.Equal(PassthroughState.Host, StateOf(GpuServerHost.Gpu1));
        Assert.Equal(PassthroughState.Enabled, StateOf(GpuServerHost.Gpu2));
        Assert.Equal(PassthroughState.Assigned, StateOf(GpuServerHost.Gpu3));
        Assert.Equal([GpuServerHost.TrainingVm], devices.Single(d => d.Address.ToString() == GpuServerHost.Gpu3).AssignedTo);
        Assert.Equal([GpuServerHost.TrainingVm, GpuServerHost.SpareVm], host.VmNames);
        // Each GPU alone in its group, socket 1's on NUMA node 1.
        Assert.Equal(4, GpuServerHost.Gpus.Select(g => host.Kernel.GroupOf(g)).Distinct().Count());
        Assert.Equal(1, devices.Single(d => d.Address.ToString() == GpuServerHost.Gpu2).NumaNode);

        var held = AssignmentView.ReadAssignments(libvirt.ListDomains(), Inventory(host), () => Gallium.Pci.Mmio.HostCpu.Read(host.Context.Procfs));
        Assert.True(Assert.Single(held).MmioFixNeeded);
        // The preset's state was made without a trace: no counted writes, no unfinished change.
        Assert.Equal(0, host.Kernel.WriteCount);
        Assert.Empty(Inventory(host).ReadUnfinishedChanges().Changes);
    }

    [Theory]
    [InlineData(SimulatedHostPreset.Workstation, true)]
    [InlineData(SimulatedHostPreset.IommuOff, false)]
    public void The_workstation_has_its_iommu_on_and_the_iommu_off_host_has_none_both_with_two_stopped_vms(SimulatedHostPreset preset, bool iommu)
    {
        using var host = SimulatedHost.Create(preset);
        Assert.Equal(iommu, new ReadinessProbe(host.Context).Probe().IommuEnabled);
        Assert.Equal(StandardHost.Gpu, host.Functions["Gpu"]);
        Assert.Equal(StandardHost.FreeNic, host.Functions["freenic"]);
        Assert.Equal(["web1", "win11"], host.VmNames);
        Assert.All(Inventory(host).ReadAll(), d => Assert.NotEqual(PassthroughState.Enabled, d.PassthroughState));
    }

    [Fact]
    public void An_unprivileged_host_is_made_as_root_and_then_seen_by_a_user_who_is_not()
    {
        using var host = SimulatedHost.Create(SimulatedHostPreset.GpuServer, isRoot: false);
        Assert.False(host.IsRoot);
        Assert.False(host.Context.Identity.IsRoot);
        Assert.Equal("vfio-pci", host.DriverOf(GpuServerHost.Gpu2));
    }

    [Fact]
    public void Dispose_deletes_the_tree_and_closes_the_hosts_libvirt()
    {
        var host = SimulatedHost.Create(SimulatedHostPreset.Workstation, vmNames: ["extra"]);
        Assert.Contains("extra", host.VmNames);
        string root = host.RootDirectory;
        host.Dispose();
        Assert.False(Directory.Exists(root));
        Assert.Throws<ObjectDisposedException>(() => host.Context.Libvirt.Open(null));
        host.Dispose();   // twice is harmless
    }

    [Fact]
    public void A_root_directory_that_is_not_empty_is_refused_and_left_as_it_was()
    {
        string root = Directory.CreateTempSubdirectory("gallium-simhost-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(root, "mine.txt"), "keep me");
            Assert.Throws<InvalidOperationException>(() => SimulatedHost.Create(SimulatedHostPreset.Workstation, root));
            Assert.Equal(["mine.txt"], Directory.GetFileSystemEntries(root).Select(Path.GetFileName));
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Fact]
    public void A_libvirt_uri_of_another_kind_is_the_default_each_command_opens_and_no_vms_are_defined_there()
    {
        using var host = SimulatedHost.Create(SimulatedHostPreset.Workstation, libvirtUri: "test:///default");
        Assert.Equal("test:///default", host.LibvirtUri);
        Assert.Throws<InvalidOperationException>(() => host.DefineVm("x"));
        // test:///default comes with libvirt's own running domain 'test' and nothing of ours.
        Assert.Equal(["test"], host.VmNames);
    }
}
