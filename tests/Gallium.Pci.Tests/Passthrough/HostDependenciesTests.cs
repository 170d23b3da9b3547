using System.Runtime.Versioning;
using Gallium.Pci.Host;

namespace Gallium.Pci.Tests.Passthrough;

/// <summary>Host dependencies on hand-made sysfs/procfs trees shaped like a real host's (stacked storage, bonds, bridges,
/// IPv6 routes, consoles), read through the production LinuxSysfs/LinuxProcfs.</summary>
[SupportedOSPlatform("linux")]
public sealed class HostDependenciesTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private string Sys(string rel) => _temp.Sub("sys/" + rel);

    private void Dir(string rel) => Directory.CreateDirectory(Sys(rel));

    private void Text(string rel, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Sys(rel))!);
        File.WriteAllText(Sys(rel), text);
    }

    private void Link(string rel, string targetRel)
    {
        string full = Sys(rel);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.CreateSymbolicLink(full, Path.GetRelativePath(Path.GetDirectoryName(full)!, Sys(targetRel)));
    }

    private void Proc(string rel, string text)
    {
        string full = _temp.Sub("proc/" + rel);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, text);
    }

    private const string Nvme = "devices/pci0000:00/0000:00:1d.0/0000:3d:00.0";
    private const string Ahci = "devices/pci0000:00/0000:00:17.0";
    private const string Sas = "devices/pci0000:00/0000:00:1c.0/0000:02:00.0";
    private const string Swap = "devices/pci0000:00/0000:00:1c.4/0000:05:00.0";

    /// <summary>A block device (whole disk or partition) below a controller, with class/block and dev/block links.</summary>
    private void Block(string name, string dir, string devNumber)
    {
        Dir(dir);
        Text($"{dir}/dev", devNumber + "\n");
        Link($"class/block/{name}", dir);
        Link($"dev/block/{devNumber}", dir);
    }

    private void Storage()
    {
        Block("nvme0n1p2", $"{Nvme}/nvme/nvme0/nvme0n1/nvme0n1p2", "259:2");
        Block("nvme0n1p3", $"{Nvme}/nvme/nvme0/nvme0n1/nvme0n1p3", "259:3");
        // LVM root on nvme0n1p3: dm-0 with slaves/nvme0n1p3.
        Block("dm-0", "devices/virtual/block/dm-0", "253:0");
        Text("devices/virtual/block/dm-0/dm/name", "vg-root\n");
        Link("devices/virtual/block/dm-0/slaves/nvme0n1p3", $"{Nvme}/nvme/nvme0/nvme0n1/nvme0n1p3");
        // md RAID1 over a SATA disk and a SAS disk.
        Block("sda1", $"{Ahci}/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1", "8:1");
        Block("sdb1", $"{Sas}/host1/target1:0:0/1:0:0:0/block/sdb/sdb1", "8:17");
        Block("md0", "devices/virtual/block/md0", "9:0");
        Link("devices/virtual/block/md0/slaves/sda1", $"{Ahci}/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1");
        Link("devices/virtual/block/md0/slaves/sdb1", $"{Sas}/host1/target1:0:0/1:0:0:0/block/sdb/sdb1");
        Block("sdc2", $"{Swap}/host2/target2:0:0/2:0:0:0/block/sdc/sdc2", "8:34");
        Block("loop0", "devices/virtual/block/loop0", "7:0");
        Proc("self/mountinfo", string.Join("\n",
            "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw",
            "23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw,size=8000k",
            "25 22 0:40 / /data\\040set rw,relatime shared:3 - btrfs /dev/nvme0n1p2 rw,space_cache=v2",
            "26 22 9:0 / /srv rw,relatime shared:4 - ext4 /dev/md0 rw",
            "27 22 7:0 / /snap/core rw,relatime shared:5 - squashfs /dev/loop0 ro",
            "28 22 0:26 / /tmp rw shared:6 - tmpfs tmpfs rw", ""));
        Proc("swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/sdc2                               partition\t8388604\t\t0\t\t-2\n");
    }

    private const string Lan0 = "devices/pci0000:00/0000:00:19.0";
    private const string Lan1 = "devices/pci0000:00/0000:00:1c.5/0000:06:00.0";
    private const string Lan2 = "devices/pci0000:00/0000:00:1c.6/0000:07:00.0";
    private const string Wifi = "devices/pci0000:00/0000:00:14.3";

    private void NetDev(string name, string pciDir)
    {
        Dir($"{pciDir}/net/{name}");
        Link($"{pciDir}/net/{name}/device", pciDir);
        Link($"class/net/{name}", $"{pciDir}/net/{name}");
    }

    private void Network(string v4DefaultVia, string? v6DefaultVia)
    {
        NetDev("eno1", Lan0);
        NetDev("enp6s0", Lan1);
        NetDev("enp7s0", Lan2);
        NetDev("wlp0s20f3", Wifi);
        // bond0 over eno1 + enp6s0; br0 with port bond0's sibling enp7s0 (brif/ and lower_ both, as the kernel makes them).
        Dir("devices/virtual/net/bond0");
        Link("class/net/bond0", "devices/virtual/net/bond0");
        Link("devices/virtual/net/bond0/lower_eno1", $"{Lan0}/net/eno1");
        Link("devices/virtual/net/bond0/lower_enp6s0", $"{Lan1}/net/enp6s0");
        Dir("devices/virtual/net/br0/brif");
        Link("class/net/br0", "devices/virtual/net/br0");
        Link("devices/virtual/net/br0/brif/enp7s0", $"{Lan2}/net/enp7s0/brport");
        Dir("devices/virtual/net/lo");
        Link("class/net/lo", "devices/virtual/net/lo");
        Proc("net/route",
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
            $"{v4DefaultVia}\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
            "wlp0s20f3\t0000A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0\n");
        Proc("net/ipv6_route",
            (v6DefaultVia is null ? "" : $"00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 {v6DefaultVia}\n") +
            "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 wlp0s20f3\n" +
            "00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo\n");
    }

    private void Consoles(bool frameBufferBound)
    {
        Text("class/vtconsole/vtcon0/name", "(S) dummy device\n");
        Text("class/vtconsole/vtcon0/bind", "0\n");
        Text("class/vtconsole/vtcon1/name", "(M) frame buffer device\n");
        Text("class/vtconsole/vtcon1/bind", frameBufferBound ? "1\n" : "0\n");
        Dir("devices/pci0000:00/0000:00:02.0");
        Text("devices/pci0000:00/0000:00:02.0/boot_vga", "1\n");
        Dir("devices/pci0000:00/0000:00:01.0/0000:01:00.0");
        Text("devices/pci0000:00/0000:00:01.0/0000:01:00.0/boot_vga", "0\n");
        Link("bus/pci/devices/0000:00:02.0", "devices/pci0000:00/0000:00:02.0");
        Link("bus/pci/devices/0000:01:00.0", "devices/pci0000:00/0000:00:01.0/0000:01:00.0");
    }

    private HostDependencies Dependencies()
    {
        Directory.CreateDirectory(_temp.Sub("proc"));
        var host = new HostContext
        {
            Sysfs = new LinuxSysfs(_temp.Sub("sys")),
            Procfs = new LinuxProcfs(_temp.Sub("proc")),
            Devfs = new LinuxDevfs(_temp.Sub("dev")),
            Modules = new Modprobe(new LinuxProcfs(_temp.Sub("proc"))),
            Identity = new ProcessIdentity(),
        };
        return new HostDependencies(host);
    }

    private static Dictionary<string, string> ByAddress(IEnumerable<HostDependency> found) =>
        found.GroupBy(d => d.Address.ToString()).ToDictionary(g => g.Key, g => string.Join(" | ", g.Select(d => d.Reason)));

    [Fact]
    public void Storage_is_found_through_lvm_md_btrfs_anonymous_devices_and_swap()
    {
        Storage();
        var found = ByAddress(Dependencies().Find());
        Assert.Equal(["0000:00:17.0", "0000:02:00.0", "0000:05:00.0", "0000:3d:00.0"], found.Keys.Order().ToArray());
        Assert.Contains("mounted on / (/dev/mapper/vg-root)", found["0000:3d:00.0"]);       // dm-0 -> slaves/nvme0n1p3
        Assert.Contains("mounted on /data set (/dev/nvme0n1p2)", found["0000:3d:00.0"]);     // btrfs 0:40, by source name
        Assert.Contains("mounted on /srv (/dev/md0)", found["0000:00:17.0"]);                // md0 -> both slaves
        Assert.Contains("mounted on /srv (/dev/md0)", found["0000:02:00.0"]);
        Assert.Contains("active swap device /dev/sdc2", found["0000:05:00.0"]);
    }

    [Fact]
    public void The_default_route_is_followed_through_a_bond_to_every_slave()
    {
        Network(v4DefaultVia: "bond0", v6DefaultVia: null);
        var found = ByAddress(Dependencies().Find());
        Assert.Equal(["0000:00:19.0", "0000:06:00.0"], found.Keys.Order().ToArray());
        Assert.Contains("eno1, under bond0", found["0000:00:19.0"]);
        Assert.Contains("enp6s0, under bond0", found["0000:06:00.0"]);
    }

    [Fact]
    public void An_ipv6_default_route_through_a_bridge_counts_and_brif_ports_are_followed()
    {
        Network(v4DefaultVia: "eno1", v6DefaultVia: "br0");
        var found = ByAddress(Dependencies().Find());
        Assert.Equal(["0000:00:19.0", "0000:07:00.0"], found.Keys.Order().ToArray());
        Assert.Contains("network interface eno1 that carries the default route", found["0000:00:19.0"]);
        Assert.Contains("enp7s0, under br0", found["0000:07:00.0"]);
    }

    [Fact]
    public void The_boot_vga_counts_only_while_a_framebuffer_console_is_bound()
    {
        Consoles(frameBufferBound: true);
        var found = Dependencies().Find();
        var only = Assert.Single(found);
        Assert.Equal("0000:00:02.0", only.Address.ToString());
        Assert.Contains("boot VGA", only.Reason);
        Assert.Contains("vtcon1", only.Reason);
    }

    [Fact]
    public void An_unbound_framebuffer_console_leaves_the_boot_vga_free()
    {
        Consoles(frameBufferBound: false);
        Assert.Empty(Dependencies().Find());
    }

    [Fact]
    public void Among_keeps_only_the_given_functions()
    {
        Storage();
        Network("bond0", null);
        var among = Dependencies().Among([PciAddress.Parse("0000:06:00.0"), PciAddress.Parse("0000:01:00.0")]);
        Assert.Equal("0000:06:00.0", Assert.Single(among).Address.ToString());
    }

    [Theory]
    [InlineData("devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1/nvme0n1p2", "0000:3d:00.0")]
    [InlineData("devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/net/enx00", "0000:00:14.0")]
    [InlineData("devices/pci10000:e0/10000:e0:06.0/10000:e1:00.0/nvme/nvme1", "10000:e1:00.0")]
    [InlineData("devices/virtual/net/bond0", null)]
    [InlineData("devices/platform/host0/target0:0:0/0:0:0:0", null)]
    public void The_nearest_pci_function_is_the_last_one_on_the_path(string path, string? expected) =>
        Assert.Equal(expected, HostDependencies.NearestPciFunction(path)?.ToString());
}
