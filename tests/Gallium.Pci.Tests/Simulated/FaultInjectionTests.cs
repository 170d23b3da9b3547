using Gallium.Pci.Host;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Simulated;

/// <summary>Fault injection, the write log, counters, snapshots and the write boundary.</summary>
public sealed class FaultInjectionTests : StandardHostTest
{
    private const string Nic = StandardHost.FreeNic;

    [Fact]
    public void FailWriteFailsTheNthWriteAndChangesNothing()
    {
        Kernel.FailWrite(2, Errnos.EIO);
        W(Dev(Nic, "driver_override"), "vfio-pci");
        var e = WriteFails(Kernel, Dev(Nic, "driver/unbind"), Nic, Errnos.EIO);
        Assert.Equal(Dev(Nic, "driver/unbind"), e.Path);
        Assert.Equal("e1000e", Kernel.DriverOf(Nic));
        W(Dev(Nic, "driver/unbind"), Nic);
        Assert.Null(Kernel.DriverOf(Nic));
        Assert.Equal([0, Errnos.EIO, 0], Kernel.Writes.Select(w => w.Errno));
        Assert.Equal(3, Kernel.WriteCount);
    }

    [Fact]
    public void FailWhereMatchesThePathAsWrittenOrResolvedAndCountsOccurrences()
    {
        Kernel.FailWhere("e1000e/unbind", Errnos.EBUSY, occurrence: 2);
        W(Dev(StandardHost.HostNic, "driver/unbind"), StandardHost.HostNic);  // 1st: resolves to drivers/e1000e/unbind
        WriteFails(Kernel, Dev(Nic, "driver/unbind"), Nic, Errnos.EBUSY);
        Assert.Equal("e1000e", Kernel.DriverOf(Nic));
        W(Dev(Nic, "driver/unbind"), Nic);  // one-shot
        Kernel.FailWhere("drivers_probe", Errnos.EINVAL);
        WriteFails(Kernel, "bus/pci/drivers_probe", Nic, Errnos.EINVAL);
        Assert.Null(Kernel.DriverOf(Nic));
    }

    [Fact]
    public void HeldDeviceTimesOutOnUnbindAndStaysBound()
    {
        Kernel.HoldDevice(Nic);
        var e = Assert.Throws<KernelWriteException>(() => Kernel.Write(Dev(Nic, "driver/unbind"), Nic, TimeSpan.FromMilliseconds(10)));
        Assert.Equal(Errnos.ETIMEDOUT, e.Errno);
        Assert.Equal("e1000e", Kernel.DriverOf(Nic));
        Assert.Equal(Errnos.ETIMEDOUT, Kernel.Writes[^1].Errno);
        Kernel.ReleaseDevice(Nic);
        W(Dev(Nic, "driver/unbind"), Nic);
        Assert.Null(Kernel.DriverOf(Nic));
    }

    [Fact]
    public void WrongDriverOnProbeLandsOnceOnTheWrongDriver()
    {
        Kernel.WrongDriverOnProbe(Nic, "pci-stub");
        W(Dev(Nic, "driver_override"), "vfio-pci");
        W(Dev(Nic, "driver/unbind"), Nic);
        W("bus/pci/drivers_probe", Nic);
        Assert.Equal("pci-stub", Kernel.DriverOf(Nic));
        W(Dev(Nic, "driver/unbind"), Nic);
        W("bus/pci/drivers_probe", Nic);
        Assert.Equal("vfio-pci", Kernel.DriverOf(Nic));
    }

    [Fact]
    public void ReadsAreCountedAndCountersReset()
    {
        Assert.Equal(0, Kernel.ReadCount);
        Kernel.ReadText(Dev(Nic, "vendor"));
        Kernel.ReadLink(Dev(Nic, "driver"));
        Kernel.List("bus/pci/devices");
        Kernel.Exists(Dev(Nic, "boot_vga"));
        Kernel.Resolve(Dev(Nic, "iommu_group"));
        Assert.Equal(5, Kernel.ReadCount);
        W(Dev(Nic, "driver_override"), "none");
        Assert.Equal(1, Kernel.WriteCount);
        Kernel.ResetCounters();
        Assert.Equal((0L, 0L), (Kernel.ReadCount, Kernel.WriteCount));
        Assert.Empty(Kernel.Writes);
    }

    [Fact]
    public void SnapshotsAreValueEqualAndSayWhatChanged()
    {
        var before = Kernel.Snapshot();
        Assert.Equal(before, Kernel.Snapshot());
        Assert.Equal(before.GetHashCode(), Kernel.Snapshot().GetHashCode());
        W(Dev(Nic, "driver_override"), "vfio-pci");
        var after = Kernel.Snapshot();
        Assert.NotEqual(before, after);
        Assert.Equal([$"{Nic}: driver e1000e -> e1000e, override (null) -> vfio-pci"], before.Differences(after));
        Assert.Equal("vfio-pci", after[Nic]!.DriverOverride);
        Assert.Contains("vfio", before.VfioNodes);
    }

    [Fact]
    public void WritesCannotLeaveTheTree()
    {
        string outside = Path.Combine(Path.GetDirectoryName(Kernel.RootDirectory)!, "outside.txt");
        File.WriteAllText(outside, "keep");
        var e = WriteFails(Kernel, "../../outside.txt", "x", Errnos.EPERM);
        Assert.Contains("outside", e.Message);
        File.CreateSymbolicLink(Path.Combine(Kernel.SysfsRoot, "bus/pci/escape"), outside);
        WriteFails(Kernel, "bus/pci/escape", "x", Errnos.EPERM);
        Assert.Equal("keep", File.ReadAllText(outside));
        Assert.Throws<ArgumentException>(() => Kernel.Write("/sys/bus/pci/drivers_probe", Nic, Timeout));
    }

    [Fact]
    public void ReadOnlyMissingAndDirectoryTargetsFailLikeSysfs()
    {
        WriteFails(Kernel, Dev(Nic, "vendor"), "0x1234", Errnos.EACCES);
        Assert.Equal("0x8086\n", Kernel.ReadText(Dev(Nic, "vendor")));
        WriteFails(Kernel, Dev(Nic, "no_such_attribute"), "1", Errnos.ENOENT);
        WriteFails(Kernel, $"bus/pci/devices/{Nic}", "1", 21);
        WriteFails(Kernel, Dev(Nic, "reset"), "2", Errnos.EINVAL);
        W(Dev(Nic, "reset"), "1");
        WriteFails(Kernel, Dev(Nic, "reset_method"), "flr", Errnos.EINVAL);  // REFERENCE §3.2 [V]: e1000e has no FLR
        W(Dev(Nic, "reset_method"), "bus");
        Assert.Equal("bus\n", Kernel.ReadText(Dev(Nic, "reset_method")));
    }

    [Fact]
    public void ContextWiresEverySeamToThisKernel()
    {
        var context = Kernel.CreateContext(isRoot: false);
        Assert.Same(Kernel, context.Sysfs);
        Assert.Same(Kernel, context.Procfs);
        Assert.Same(Kernel, context.Devfs);
        Assert.Same(Kernel, context.Modules);
        Assert.False(context.Identity.IsRoot);
        Assert.True(Kernel.CreateContext().Identity.IsRoot);
        Assert.Equal(HostPaths.Under(Kernel.StateRoot), context.Paths);
        Assert.Equal(PciIdsLocator.Find(null), context.PciIdsPath);
        Assert.Contains("cmdline", Directory.EnumerateFiles(((IProcfs)Kernel).Root).Select(Path.GetFileName));
        Assert.True(context.Devfs.Exists("vfio/vfio"));
        Assert.StartsWith("BOOT_IMAGE=", context.Procfs.ReadText("cmdline"));
    }

    [Fact]
    public void ConcurrentWritersSeeConsistentState()
    {
        var nics = new[] { StandardHost.FreeNic, StandardHost.HostNic, StandardHost.LegacyNic, StandardHost.GpuAudio };
        Parallel.ForEach(nics, bdf =>
        {
            for (int i = 0; i < 5; i++)
            {
                Kernel.Write(Dev(bdf, "driver_override"), "vfio-pci", Timeout);
                if (Kernel.DriverOf(bdf) is not null) Kernel.Write(Dev(bdf, "driver/unbind"), bdf, Timeout);
                Kernel.Write("bus/pci/drivers_probe", bdf, Timeout);
                Kernel.Write(Dev(bdf, "driver_override"), "\n", Timeout);
                Kernel.Write(Dev(bdf, "driver/unbind"), bdf, Timeout);
                Kernel.Write("bus/pci/drivers_probe", bdf, Timeout);
            }
        });
        Assert.All(Kernel.Writes, w => Assert.Equal(0, w.Errno));
        Assert.Equal("e1000e", Kernel.DriverOf(StandardHost.FreeNic));
        // LegacyNic is behind the PCIe-to-PCI bridge: its group still has the bridge and the sound card on host drivers,
        // but binding vfio-pci itself is allowed (viability is checked by VFIO at open, not at bind).
        Assert.Equal("8139too", Kernel.DriverOf(StandardHost.LegacyNic));
        Assert.Equal(["vfio"], Kernel.Snapshot().VfioNodes);
    }
}
