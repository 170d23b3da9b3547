using Gallium.Pci.Host;

namespace Gallium.Pci.Tests.Inventory;

public sealed class SysfsFormatTests
{
    private const string Zero = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";

    [Theory]
    [InlineData("0x8086\n", 0x8086)]
    [InlineData("0x10de", 0x10de)]
    [InlineData("8086", 0x8086)]
    [InlineData("  0X1AF4 \n", 0x1af4)]
    [InlineData("0x0000\n", 0)]
    [InlineData("0xffff\n", 0xffff)]
    public void ParseId_reads_kernel_and_tolerated_spellings(string text, int expected) =>
        Assert.Equal((ushort)expected, SysfsFormat.ParseId(text));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("\n")]
    [InlineData("0x")]
    [InlineData("0x10000\n")]   // wider than 16 bits
    [InlineData("0xzz12\n")]
    [InlineData("-0x1\n")]
    [InlineData("0x80 86\n")]
    [InlineData("(null)\n")]
    public void ParseId_rejects_garbage(string? text) => Assert.Null(SysfsFormat.ParseId(text));

    [Fact]
    public void ParseRevision_and_ParseClass_use_their_widths()
    {
        Assert.Equal((byte)0xa1, SysfsFormat.ParseRevision("0xa1\n"));
        Assert.Null(SysfsFormat.ParseRevision("0x100\n"));
        Assert.Equal(0x030000u, SysfsFormat.ParseClass("0x030000\n"));
        Assert.Equal(0x0c0330u, SysfsFormat.ParseClass("0c0330"));
        Assert.Null(SysfsFormat.ParseClass("0x1000000\n"));
        Assert.Null(SysfsFormat.ParseClass("VGA\n"));
    }

    [Fact]
    public void Class_code_splits_into_base_sub_and_prog_if()
    {
        Assert.Equal(0x0c, SysfsFormat.BaseClass(0x0c0330));
        Assert.Equal(0x03, SysfsFormat.SubClass(0x0c0330));
        Assert.Equal(0x30, SysfsFormat.ProgIf(0x0c0330));
        Assert.True(SysfsFormat.IsBridgeClass(0x060400));
        Assert.True(SysfsFormat.IsBridgeClass(0x060401));  // subtractive-decode PCI bridge
        Assert.True(SysfsFormat.IsBridgeClass(0x060700));  // CardBus
        Assert.False(SysfsFormat.IsBridgeClass(0x060000)); // host bridge: header type 0
        Assert.False(SysfsFormat.IsBridgeClass(0x030000));
    }

    [Theory]
    [InlineData("(null)\n", null)]
    [InlineData("", null)]
    [InlineData("\n", null)]
    [InlineData(null, null)]
    [InlineData("vfio-pci\n", "vfio-pci")]
    [InlineData("none\n", "none")]
    public void ParseDriverOverride_treats_null_and_empty_as_unset(string? text, string? expected) =>
        Assert.Equal(expected, SysfsFormat.ParseDriverOverride(text));

    [Theory]
    [InlineData("-1\n", null)]
    [InlineData(null, null)]
    [InlineData("", null)]
    [InlineData("x\n", null)]
    [InlineData("0\n", 0)]
    [InlineData("3\n", 3)]
    public void ParseNumaNode_maps_unknown_to_null(string? text, int? expected) =>
        Assert.Equal(expected, SysfsFormat.ParseNumaNode(text));

    [Fact]
    public void Small_decimal_attributes()
    {
        Assert.Equal(7, SysfsFormat.ParseSriovTotalVfs("7\n"));
        Assert.Null(SysfsFormat.ParseSriovTotalVfs(null));
        Assert.True(SysfsFormat.ParseBootVga("1\n"));
        Assert.False(SysfsFormat.ParseBootVga("0\n"));
        Assert.False(SysfsFormat.ParseBootVga(null));
    }

    [Fact]
    public void ParseResetMethods_splits_on_spaces()
    {
        Assert.Equal(["pm", "bus"], SysfsFormat.ParseResetMethods("pm bus\n"));
        Assert.Equal(["flr", "pm", "bus"], SysfsFormat.ParseResetMethods("flr  pm bus"));
        Assert.Empty(SysfsFormat.ParseResetMethods("\n"));
        Assert.Empty(SysfsFormat.ParseResetMethods(null));
    }

    [Fact]
    public void Links_give_their_last_component()
    {
        Assert.Equal("e1000e", SysfsFormat.LinkName("../../../../bus/pci/drivers/e1000e"));
        Assert.Equal("vfio-pci", SysfsFormat.LinkName("../../bus/pci/drivers/vfio-pci/"));
        Assert.Null(SysfsFormat.LinkName(null));
        Assert.Null(SysfsFormat.LinkName(""));
        Assert.Equal(12, SysfsFormat.ParseIommuGroupLink("../../../kernel/iommu_groups/12"));
        Assert.Null(SysfsFormat.ParseIommuGroupLink("../../../kernel/iommu_groups/x"));
        Assert.Null(SysfsFormat.ParseIommuGroupLink(null));
        Assert.Equal(PciAddress.Parse("0000:03:10.1"), SysfsFormat.ParseDeviceLink("../0000:03:10.1"));
        Assert.Null(SysfsFormat.ParseDeviceLink("../virtio0"));
    }

    [Fact]
    public void Resource_observed_lines_decode_as_REFERENCE_3_4()
    {
        // BAR0 32-bit MEM (e1000e), BAR1 I/O, BAR2+3 a 1 GiB 64-bit prefetchable pair, BAR4 64-bit non-prefetchable pair.
        string text =
            "0x00000000fe840000 0x00000000fe85ffff 0x0000000000040200\n" +
            "0x0000000000003000 0x00000000000030ff 0x0000000000040101\n" +
            "0x0000000100000000 0x000000013fffffff 0x000000000014220c\n" +
            Zero +
            "0x0000004000000000 0x000000400007ffff 0x0000000000140204\n" +
            Zero +
            "0x00000000fe800000 0x00000000fe83ffff 0x0000000000046200\n" +  // ROM: not a BAR
            string.Concat(Enumerable.Repeat(Zero, 6));
        var bars = SysfsFormat.ParseResource(text);
        Assert.Equal(4, bars.Count);
        Assert.Equal(new PciBar(0, 0xfe840000, 0x20000, false, false, false, true), bars[0]);
        Assert.Equal(new PciBar(1, 0x3000, 0x100, false, false, true, true), bars[1]);
        Assert.Equal(new PciBar(2, 0x100000000, 1UL << 30, true, true, false, true), bars[2]);
        Assert.Equal(new PciBar(4, 0x4000000000, 0x80000, true, false, false, true), bars[3]);
        Assert.True(bars[2].Is64BitPrefetchable);
        Assert.False(bars[3].Is64BitPrefetchable);
    }

    [Theory]
    [InlineData(7)]
    [InlineData(13)]
    [InlineData(17)]
    public void Resource_line_count_is_never_assumed(int lines)
    {
        var rows = Enumerable.Repeat(Zero, lines).ToArray();
        rows[0] = "0x00000000fe000000 0x00000000feffffff 0x0000000000040200\n";
        rows[5] = "0x00000000fd000000 0x00000000fd003fff 0x0000000000040200\n";
        rows[6] = "0x00000000fc000000 0x00000000fc00ffff 0x0000000000046200\n"; // ROM
        if (lines > 7) rows[7] = "0x00000000fb000000 0x00000000fb0fffff 0x0000000000140204\n"; // VF BAR
        if (lines > 13) rows[13] = "0x0000000000001000 0x0000000000001fff 0x0000000000200100\n"; // bridge window
        var bars = SysfsFormat.ParseResource(string.Concat(rows));
        Assert.Equal([0, 5], bars.Select(b => b.Index));
        Assert.Equal([0x1000000UL, 0x4000UL], bars.Select(b => b.Size));
    }

    [Fact]
    public void Resource_empty_short_and_broken_files()
    {
        Assert.Empty(SysfsFormat.ParseResource(null));
        Assert.Empty(SysfsFormat.ParseResource(""));
        Assert.Empty(SysfsFormat.ParseResource("\n\n"));
        Assert.Empty(SysfsFormat.ParseResource(Zero + Zero));
        // Only two lines, no trailing newline.
        var two = SysfsFormat.ParseResource(Zero + "0x00000000fe000000 0x00000000fe000fff 0x0000000000040200");
        Assert.Equal(new PciBar(1, 0xfe000000, 0x1000, false, false, false, true), Assert.Single(two));
        // A garbled line is skipped; the lines after it keep their BAR numbers.
        var broken = SysfsFormat.ParseResource("garbage\n0x1 0x2\n0x00000000fe000000 0x00000000fe000fff 0x0000000000040200 0x5\n" +
                                               "0x00000000fe001000 0x00000000fe001fff 0x0000000000040200\n");
        Assert.Equal(3, Assert.Single(broken).Index);
    }

    [Fact]
    public void Resource_unassigned_bars_keep_their_size_when_the_kernel_does()
    {
        // A 64 GiB BAR the kernel could not place: start 0, IORESOURCE_UNSET, end = size-1 (REFERENCE §3.4, §6).
        string unset = "0x0000000000000000 0x0000000fffffffff 0x000000002014220c\n";
        // Zeroed after a failed assignment but flags kept: no size to report.
        string zeroed = "0x0000000000000000 0x0000000000000000 0x0000000000040200\n";
        var bars = SysfsFormat.ParseResource(zeroed + Zero + unset + Zero);
        Assert.Equal(new PciBar(0, 0, 0, false, false, false, false), bars[0]);
        Assert.Equal(new PciBar(2, 0, 64UL << 30, true, true, false, false), bars[1]);
        Assert.Equal(2, bars.Count);
    }

    [Fact]
    public void Resource_upper_half_of_a_64_bit_pair_is_never_a_bar()
    {
        // Even if the upper register's line were not all zeros, it belongs to BAR4.
        string text = Zero + Zero + Zero + Zero +
                      "0x0000004000000000 0x000000400007ffff 0x0000000000140204\n" +
                      "0x00000000fe000000 0x00000000fe000fff 0x0000000000040200\n";
        Assert.Equal(4, Assert.Single(SysfsFormat.ParseResource(text)).Index);
    }

    [Fact]
    public void Resource_line_parser_accepts_only_three_hex_fields()
    {
        Assert.True(SysfsFormat.TryParseResourceLine("0x10 0x1f 0x200", out ulong s, out ulong e, out ulong f));
        Assert.Equal((0x10UL, 0x1fUL, 0x200UL), (s, e, f));
        Assert.True(SysfsFormat.TryParseResourceLine("  0x10\t0x1f 0x200 \r", out _, out _, out _));
        Assert.False(SysfsFormat.TryParseResourceLine("0x10 0x1f", out _, out _, out _));
        Assert.False(SysfsFormat.TryParseResourceLine("0x10 0x1f 0x200 0x1", out _, out _, out _));
        Assert.False(SysfsFormat.TryParseResourceLine("0x10 0xg 0x200", out _, out _, out _));
    }
}
