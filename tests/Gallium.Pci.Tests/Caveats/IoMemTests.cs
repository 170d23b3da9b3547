using Gallium.Pci.Host;

namespace Gallium.Pci.Tests.Caveats;

/// <summary>/proc/iomem as the real kernel prints it, and the firmware framebuffers in it.</summary>
public sealed class IoMemTests
{
    /// <summary>Read in the test guest (Debian 6.1.0-57, QEMU stdvga at 00:10.0 booted with vga=0x317; tests/guest/run-guest.sh --vga).</summary>
    private const string GuestIoMem = """
        00000000-00000fff : Reserved
        00001000-0009fbff : System RAM
        000a0000-000bffff : PCI Bus 0000:00
        00100000-7ffdffff : System RAM
          48910000-499fffff : Kernel bss
        7ffe0000-7fffffff : Reserved
        80000000-afffffff : PCI Bus 0000:00
        b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
          b0000000-bfffffff : Reserved
            b0000000-bfffffff : pnp 00:04
        c0000000-febfffff : PCI Bus 0000:00
          fd000000-fdffffff : 0000:00:10.0
            fd000000-fdffffff : vesafb
          fe000000-fe1fffff : PCI Bus 0000:05
            fe000000-fe01ffff : 0000:05:00.0
              fe000000-fe01ffff : e1000e
          fea9f000-fea9ffff : 0000:00:10.0
        fed90000-fed90fff : dmar0
        100000000-8ffffffff : PCI Bus 0000:00
          100000000-13fffffff : PCI Bus 0000:02
            100000000-13fffffff : 0000:02:00.0
        fd00000000-ffffffffff : Reserved
        """;

    [Fact]
    public void Parses_the_real_kernels_tree_with_depth_and_64_bit_addresses()
    {
        var map = IoMem.Parse(GuestIoMem);

        Assert.Equal(GuestIoMem.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length, map.Entries.Count);
        Assert.Equal(new IoMemEntry(2, 0xfd000000, 0xfdffffff, "vesafb"), map.Entries.Single(e => e.Name == "vesafb"));
        Assert.Equal(new IoMemEntry(3, 0xfe000000, 0xfe01ffff, "e1000e"), map.Entries.Single(e => e.Name == "e1000e"));
        Assert.Equal(new IoMemEntry(0, 0xfd00000000, 0xffffffffff, "Reserved"), map.Entries[^1]);
        Assert.Equal("PCI MMCONFIG 0000 [bus 00-ff]", map.Entries[7].Name);
        Assert.False(map.IsRedacted);
    }

    [Fact]
    public void Finds_the_vesafb_holding_the_VGA_BAR_and_nothing_in_other_BARs()
    {
        var map = IoMem.Parse(GuestIoMem);
        var vgaBar0 = new PciBar(0, 0xfd000000, 16 << 20, Is64Bit: false, IsPrefetchable: true, IsIo: false, IsAssigned: true);
        var vgaBar2 = new PciBar(2, 0xfea9f000, 4096, false, false, false, true);
        var nicBar = new PciBar(0, 0xfe000000, 128 << 10, false, false, false, true);
        var ioBar = new PciBar(4, 0xfd000000, 32, false, false, IsIo: true, IsAssigned: true);     // an I/O port range is no memory
        var unassigned = new PciBar(1, 0, 16 << 20, false, true, false, IsAssigned: false);

        var held = Assert.Single(map.FramebuffersIn([vgaBar0, vgaBar2, ioBar, unassigned]));
        Assert.Equal(0, held.Bar.Index);
        Assert.Equal("vesafb", held.Framebuffer.Name);
        Assert.Empty(map.FramebuffersIn([nicBar]));
        Assert.Equal(["video=vesafb:off", "initcall_blacklist=sysfb_init"], IoMem.ParametersThatFree("vesafb"));
    }

    [Fact]
    public void A_partial_overlap_counts_and_a_bar_just_past_the_framebuffer_does_not()
    {
        var map = IoMem.Parse("  e0000000-e02fffff : BOOTFB\n");
        Assert.Single(map.FramebuffersIn([new PciBar(1, 0xe0200000, 0x200000, false, true, false, true)]));
        Assert.Empty(map.FramebuffersIn([new PciBar(1, 0xe0300000, 0x100000, false, true, false, true)]));
        Assert.Empty(map.FramebuffersIn([new PciBar(1, 0xdff00000, 0x100000, false, true, false, true)]));
    }

    [Fact]
    public void Redacted_addresses_of_an_unprivileged_reader_match_nothing()
    {
        var map = IoMem.Parse("00000000-00000000 : System RAM\n  00000000-00000000 : efifb\n");
        Assert.True(map.IsRedacted);
        Assert.Empty(map.FramebuffersIn([new PciBar(0, 0, 4096, false, false, false, true)]));
    }

    [Fact]
    public void Missing_or_garbled_lines_are_skipped()
    {
        Assert.Empty(IoMem.Parse(null).Entries);
        var map = IoMem.Parse("garbage\nzz-10 : x\n10-zz : y\n1000-1fff : ok\n\n");
        Assert.Equal([new IoMemEntry(0, 0x1000, 0x1fff, "ok")], map.Entries);
    }
}
