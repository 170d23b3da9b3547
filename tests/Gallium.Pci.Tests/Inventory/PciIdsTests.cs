using System.Globalization;
using System.IO.Compression;
using System.Text;
using System.Text.RegularExpressions;
using Gallium.Pci.Host;
using Xunit.Abstractions;

namespace Gallium.Pci.Tests.Inventory;

public sealed class PciIdsTests(ITestOutputHelper output) : IDisposable
{
    // Shaped like the real file: comments, tabs for nesting, two spaces after ids, a CRLF line, a duplicate, an
    // unknown letter block with children, a generic subsystem block, classes with and without subclasses.
    private const string Sample =
        "#\n#\tList of PCI ID's\n#\n\n" +
        "# Syntax:\n# vendor  vendor_name\n#\tdevice  device_name\n#\t\tsubvendor subdevice  subsystem_name\n\n" +
        "10de  NVIDIA Corporation\n" +
        "\t2204  GA102 [GeForce RTX 3090]\n" +
        "\t\t10de 1454  GeForce RTX 3090 Founders Edition\n" +
        "\t\t1462 3880  RTX 3090 GAMING X TRIO\n" +
        "# a comment between entries\n" +
        "\t1aef  GA102 High Definition Audio Controller\n" +
        "1af4  Red Hat, Inc.\r\n" +
        "\t1041  Virtio 1.0 network device   \n" +
        "\t1af4  Self-referencing device\n" +
        "8086  Intel Corporation\n" +
        "\t1533  I210 Gigabit Network Connection\n" +
        "\t1533  Duplicate name that lspci would reject\n" +
        "ABCD  Upper-Case Hex Vendor\n" +
        "\tEF01  Upper-Case Device\n" +
        "beef  Vendor with a trailing line\n" +
        "\tzzzz  Not hex: skipped\n" +
        "S 8086\n" +
        "\t7777  Generic Intel subsystem\n" +
        "X 12  Reserved block\n" +
        "\t34  child of a reserved block\n" +
        "\n# List of known device classes, subclasses and programming interfaces\n\n" +
        "C 01  Mass storage controller\n" +
        "\t06  SATA controller\n" +
        "\t\t01  AHCI 1.0\n" +
        "\t80  Mass storage controller\n" +
        "C 03  Display controller\n" +
        "\t00  VGA compatible controller\n" +
        "\t\t00  VGA controller\n" +
        "\t02  3D controller\n" +
        "C 0c  Serial bus controller\n" +
        "\t03  USB controller\n" +
        "\t\t30  XHCI\n" +
        "C ff  Unassigned class\n";

    private readonly string _dir = Directory.CreateTempSubdirectory("gallium-ids-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string WriteSample(bool gzip = false)
    {
        string path = Path.Combine(_dir, gzip ? "pci.ids.gz" : "pci.ids");
        byte[] bytes = Encoding.UTF8.GetBytes(Sample);
        if (!gzip) File.WriteAllBytes(path, bytes);
        else
        {
            using var file = File.Create(path);
            using var gz = new GZipStream(file, CompressionLevel.Optimal);
            gz.Write(bytes);
        }
        return path;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Sample_file_names_vendors_devices_subsystems(bool gzip)
    {
        var ids = new PciIds(WriteSample(gzip));
        Assert.True(ids.HasNames);
        Assert.Equal("NVIDIA Corporation", ids.VendorName(0x10de));
        Assert.Equal("GA102 [GeForce RTX 3090]", ids.DeviceName(0x10de, 0x2204));
        Assert.Equal("GA102 High Definition Audio Controller", ids.DeviceName(0x10de, 0x1aef));
        Assert.Equal("GeForce RTX 3090 Founders Edition", ids.SubsystemName(0x10de, 0x2204, 0x10de, 0x1454));
        Assert.Equal("RTX 3090 GAMING X TRIO", ids.SubsystemName(0x10de, 0x2204, 0x1462, 0x3880));
        Assert.Equal("Red Hat, Inc.", ids.VendorName(0x1af4));                       // CRLF stripped
        Assert.Equal("Virtio 1.0 network device", ids.DeviceName(0x1af4, 0x1041));    // trailing spaces stripped
        Assert.Equal("I210 Gigabit Network Connection", ids.DeviceName(0x8086, 0x1533)); // first of a duplicate
        Assert.Equal("Upper-Case Hex Vendor", ids.VendorName(0xabcd));
        Assert.Equal("Upper-Case Device", ids.DeviceName(0xabcd, 0xef01));
        Assert.Equal("Vendor with a trailing line", ids.VendorName(0xbeef));
        Assert.Equal(5, ids.VendorCount);
        Assert.Equal(6, ids.DeviceCount);
        Assert.Equal(2, ids.SubsystemCount);
        Assert.Null(ids.VendorName(0x1234));
        Assert.Null(ids.DeviceName(0x10de, 0x0001));
        Assert.Null(ids.DeviceName(0x1234, 0x2204));
    }

    [Fact]
    public void Subsystem_lookup_follows_lspci()
    {
        var ids = new PciIds(WriteSample());
        // Not listed, but subsystem ids equal the device ids: lspci repeats the device name.
        Assert.Equal("Self-referencing device", ids.SubsystemName(0x1af4, 0x1af4, 0x1af4, 0x1af4));
        // Generic subsystem block (S vvvv).
        Assert.Equal("Generic Intel subsystem", ids.SubsystemName(0x10de, 0x2204, 0x8086, 0x7777));
        Assert.Null(ids.SubsystemName(0x10de, 0x2204, 0x1462, 0x0001));
    }

    [Fact]
    public void Class_section_and_the_lspci_class_name_rule()
    {
        var ids = new PciIds(WriteSample());
        Assert.Equal("Display controller", ids.BaseClassName(0x03));
        Assert.Equal("VGA compatible controller", ids.SubclassName(0x03, 0x00));
        Assert.Equal("XHCI", ids.ProgIfName(0x0c, 0x03, 0x30));
        Assert.Equal("AHCI 1.0", ids.ProgIfName(0x01, 0x06, 0x01));
        Assert.Null(ids.ProgIfName(0x0c, 0x03, 0x20));
        Assert.Equal("VGA compatible controller", ids.ClassName(0x030000));
        Assert.Equal("3D controller", ids.ClassName(0x030200));
        Assert.Equal("Mass storage controller", ids.ClassName(0x018000));
        Assert.Equal("Display controller", ids.ClassName(0x038000));      // unknown subclass: the base class
        Assert.Equal("Unassigned class", ids.ClassName(0xff0000));
        Assert.Null(ids.ClassName(0x420000));
        // The reserved block and its child are not classes or vendors.
        Assert.Null(ids.BaseClassName(0x12));
        Assert.Null(ids.VendorName(0x0034));
    }

    [Fact]
    public void A_vendor_listed_twice_keeps_its_first_name_and_the_devices_of_both_blocks()
    {
        string path = Path.Combine(_dir, "twice.ids");
        File.WriteAllText(path,
            "10ec  Realtek Semiconductor Co., Ltd.\n" +
            "\t8139  RTL-8100/8101L/8139 PCI Fast Ethernet Adapter\n" +
            "\t\t10ec 8139  RTL-8139/8139C/8139C+ Ethernet Controller\n" +
            "10ec  Realtek again\n" +
            "\t8139  A later duplicate\n" +
            "\t8168  RTL8111/8168 PCI Express Gigabit Ethernet controller\n" +
            "\t\t1043 8432  P8P67 and other motherboards\n");
        var ids = new PciIds(path);
        Assert.Equal("Realtek Semiconductor Co., Ltd.", ids.VendorName(0x10ec));
        Assert.Equal("RTL-8100/8101L/8139 PCI Fast Ethernet Adapter", ids.DeviceName(0x10ec, 0x8139));
        Assert.Equal("RTL8111/8168 PCI Express Gigabit Ethernet controller", ids.DeviceName(0x10ec, 0x8168));
        Assert.Equal("P8P67 and other motherboards", ids.SubsystemName(0x10ec, 0x8168, 0x1043, 0x8432));
        Assert.Equal(1, ids.VendorCount);
        Assert.Equal(2, ids.DeviceCount);
        Assert.Equal(2, ids.SubsystemCount);
    }

    [Fact]
    public void A_broken_top_level_line_ends_the_block_above_it_but_comments_and_blank_lines_do_not()
    {
        string path = Path.Combine(_dir, "broken.ids");
        File.WriteAllText(path,
            "10ec  Realtek Semiconductor Co., Ltd.\n" +
            "\t8139  RTL-8139\n" +
            "# a comment\n" +
            "\n" +
            "\t8168  RTL8111\n" +
            "xyz broken line\n" +
            "\t8169  child of the broken line, not Realtek's\n" +
            "C 02  Network controller\n" +
            "\t00  Ethernet controller\n" +
            "zz\n" +
            "\t80  child of a broken line, not a subclass\n");
        var ids = new PciIds(path);
        Assert.Equal("RTL-8139", ids.DeviceName(0x10ec, 0x8139));
        Assert.Equal("RTL8111", ids.DeviceName(0x10ec, 0x8168));
        Assert.Null(ids.DeviceName(0x10ec, 0x8169));
        Assert.Equal("Ethernet controller", ids.SubclassName(0x02, 0x00));
        Assert.Null(ids.SubclassName(0x02, 0x80));
        Assert.Equal("Network controller", ids.ClassName(0x028000));
    }

    [Fact]
    public void Looking_up_one_vendor_parses_only_that_vendors_block()
    {
        var ids = new PciIds(SystemPciIds());
        Assert.Equal("Intel Corporation", ids.VendorName(0x8086));
        Assert.Equal(0, ids.ParsedVendorBlocks);   // the vendor's own line is in the top-level index
        Assert.NotNull(ids.DeviceName(0x10de, 0x2204));
        Assert.NotNull(ids.ClassName(0x030000));
        Assert.Equal(1, ids.ParsedVendorBlocks);
        Assert.True(ids.VendorCount > 1000);
        Assert.Equal(1, ids.ParsedVendorBlocks);
    }

    [Fact]
    public void Missing_or_broken_file_gives_no_names_and_no_error()
    {
        foreach (var ids in new[] { new PciIds(null), new PciIds(Path.Combine(_dir, "absent.ids")), new PciIds(_dir) })
        {
            Assert.False(ids.HasNames);
            Assert.Null(ids.VendorName(0x8086));
            Assert.Null(ids.ClassName(0x030000));
            Assert.Null(ids.SubsystemName(0x8086, 1, 0x8086, 1));
        }
        string badGz = Path.Combine(_dir, "bad.gz");
        File.WriteAllBytes(badGz, [0x1f, 0x8b, 0x08, 0x00, 0x01, 0x02]);
        Assert.False(new PciIds(badGz).HasNames);
    }

    [Fact]
    public void Concurrent_first_lookups_see_one_complete_database()
    {
        var ids = new PciIds(WriteSample());
        var results = new string?[64];
        Parallel.For(0, results.Length, i => results[i] = ids.SubsystemName(0x10de, 0x2204, 0x1462, 0x3880) + "|" + ids.ClassName(0x0c0330));
        Assert.All(results, r => Assert.Equal("RTX 3090 GAMING X TRIO|USB controller", r));
    }

    [Fact]
    public void System_file_loads_and_names_well_known_ids()
    {
        string path = SystemPciIds();
        var ids = new PciIds(path);
        Assert.Equal("Intel Corporation", ids.VendorName(0x8086));
        Assert.Equal("Red Hat, Inc.", ids.VendorName(0x1af4));
        Assert.Equal("GA102 [GeForce RTX 3090]", ids.DeviceName(0x10de, 0x2204));
        Assert.Equal("VGA compatible controller", ids.ClassName(0x030000));
        Assert.Equal("XHCI", ids.ProgIfName(0x0c, 0x03, 0x30));
        Assert.True(ids.VendorCount > 1000 && ids.DeviceCount > 10000, $"{ids.VendorCount} vendors, {ids.DeviceCount} devices");
        output.WriteLine($"{path}: {new FileInfo(path).Length} bytes, {ids.VendorCount} vendors, {ids.DeviceCount} devices, " +
                         $"{ids.SubsystemCount} subsystems, parsed in {ids.LoadTime.TotalMilliseconds:0.0} ms (first load in this process, includes JIT)");
        var again = new PciIds(path);
        output.WriteLine($"second parse (warm JIT, warm page cache): {again.LoadTime.TotalMilliseconds:0.0} ms");
    }

    /// <summary>The same ids through lspci's own parser: a fabricated config-space dump (lspci -F) of hundreds of devices, one
    /// per sampled pci.ids entry (devices, subsystems, every class/subclass, unknown ids), must get the same names.</summary>
    [Fact]
    public void System_file_names_equal_lspci_for_sampled_ids()
    {
        string path = SystemPciIds();
        var ids = new PciIds(path);
        var samples = SampleEntries(path);
        Assert.True(samples.Count > 300, $"only {samples.Count} samples");

        var dump = new StringBuilder();
        for (int i = 0; i < samples.Count; i++)
        {
            var s = samples[i];
            var cfg = new byte[64];
            BitConverter.TryWriteBytes(cfg.AsSpan(0), s.Vendor);
            BitConverter.TryWriteBytes(cfg.AsSpan(2), s.Device);
            cfg[8] = 1;
            cfg[9] = (byte)s.Class; cfg[10] = (byte)(s.Class >> 8); cfg[11] = (byte)(s.Class >> 16);
            BitConverter.TryWriteBytes(cfg.AsSpan(0x2c), s.SubVendor);
            BitConverter.TryWriteBytes(cfg.AsSpan(0x2e), s.SubDevice);
            dump.Append(CultureInfo.InvariantCulture, $"0000:{i / 32:x2}:{i % 32:x2}.0 x\n");
            for (int row = 0; row < 64; row += 16)
                dump.Append(CultureInfo.InvariantCulture, $"{row:x2}: ").AppendJoin(' ', cfg.Skip(row).Take(16).Select(b => b.ToString("x2", CultureInfo.InvariantCulture))).Append('\n');
            dump.Append('\n');
        }
        string dumpFile = Path.Combine(_dir, "dump.txt");
        File.WriteAllText(dumpFile, dump.ToString());

        var records = Lspci.VmmRecords(Lspci.Run("-F", dumpFile, "-vmm", "-D", "-i", path));
        Assert.Equal(samples.Count, records.Count);
        var mismatches = new List<string>();
        for (int i = 0; i < samples.Count; i++)
        {
            var s = samples[i];
            var r = records[i];
            Check(i, "Vendor", r, Lspci.VendorText(s.Vendor, ids.VendorName(s.Vendor)));
            Check(i, "Device", r, Lspci.DeviceText(s.Device, ids.DeviceName(s.Vendor, s.Device)));
            Check(i, "Class", r, Lspci.ClassText(s.Class, ids));
            // lspci shows no subsystem when its vendor is 0 or 0xffff (none implemented).
            Check(i, "SDevice", r, s.SubVendor is 0 or 0xffff ? "<missing>"
                : Lspci.DeviceText(s.SubDevice, ids.SubsystemName(s.Vendor, s.Device, s.SubVendor, s.SubDevice)));
        }
        output.WriteLine($"{samples.Count} fabricated functions compared with lspci -F; {mismatches.Count} mismatches");
        Assert.True(mismatches.Count == 0, string.Join("\n", mismatches));

        void Check(int i, string field, IReadOnlyDictionary<string, string> record, string expected)
        {
            string actual = record.GetValueOrDefault(field) ?? "<missing>";
            if (actual != expected) mismatches.Add($"#{i} {samples[i]} {field}: lspci '{actual}', ours '{expected}'");
        }
    }

    private static string SystemPciIds() =>
        PciIdsLocator.Find(null) ?? throw new InvalidOperationException("No system pci.ids: CI installs the pci.ids package (.ci/run).");

    private sealed record Entry(ushort Vendor, ushort Device, ushort SubVendor, ushort SubDevice, uint Class);

    /// <summary>Entries picked from the file with plain regexes (independent of the parser under test): every 60th device,
    /// every 25th subsystem line, every subclass and prog-if, and ids the file does not have.</summary>
    private static List<Entry> SampleEntries(string path)
    {
        var vendorLine = new Regex("^([0-9a-f]{4})  ");
        var deviceLine = new Regex("^\t([0-9a-f]{4})  ");
        var subsysLine = new Regex("^\t\t([0-9a-f]{4}) ([0-9a-f]{4})  ");
        var classLine = new Regex("^C ([0-9a-f]{2})  ");
        var subclassLine = new Regex("^\t([0-9a-f]{2})  ");
        var progIfLine = new Regex("^\t\t([0-9a-f]{2})  ");
        static ushort H(Group g) => ushort.Parse(g.Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

        var list = new List<Entry>();
        ushort v = 0, d = 0;
        int cls = -1, sub = 0, devices = 0, subsystems = 0;
        foreach (string line in File.ReadLines(path))
        {
            Match m;
            if (cls < 0)
            {
                if ((m = classLine.Match(line)).Success) { cls = H(m.Groups[1]); list.Add(new(0x8086, 0xffff, 0, 0, (uint)cls << 16 | 0xfe00)); continue; }
                if ((m = vendorLine.Match(line)).Success) { v = H(m.Groups[1]); continue; }
                if ((m = deviceLine.Match(line)).Success)
                {
                    d = H(m.Groups[1]);
                    if (devices++ % 60 == 0) list.Add(new(v, d, 0, 0, 0x020000));
                    continue;
                }
                if ((m = subsysLine.Match(line)).Success && subsystems++ % 25 == 0)
                    list.Add(new(v, d, H(m.Groups[1]), H(m.Groups[2]), 0x030000));
            }
            else
            {
                if ((m = classLine.Match(line)).Success) { cls = H(m.Groups[1]); list.Add(new(0x8086, 0xffff, 0, 0, (uint)cls << 16 | 0xfe00)); continue; }
                if ((m = subclassLine.Match(line)).Success) { sub = H(m.Groups[1]); list.Add(new(0x1af4, 0x1041, 0, 0, (uint)(cls << 16 | sub << 8))); continue; }
                if ((m = progIfLine.Match(line)).Success) list.Add(new(0x1af4, 0x1041, 0, 0, (uint)(cls << 16 | sub << 8 | H(m.Groups[1]))));
            }
        }
        list.Add(new(0x8086, 0x0d57, 0x8086, 0x0d57, 0x060000));  // an Intel device this file does not know
        list.Add(new(0x1af4, 0x1041, 0x1af4, 0x1041, 0xee0000));  // subsystem = device; a class no one defines
        return list.Take(32 * 256).ToList();
    }
}

/// <summary>Runs pciutils' lspci and reads its machine-readable output; also spells names the way lspci falls back when
/// pci.ids lacks an entry (pciutils lib/names.c), so a comparison can hold ours to lspci exactly.</summary>
internal static class Lspci
{
    public static string Run(params string[] args)
    {
        string exe = new[] { "/usr/bin/lspci", "/bin/lspci", "/usr/sbin/lspci", "/sbin/lspci" }.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException("lspci is not installed: CI installs pciutils (.ci/run).");
        var psi = new System.Diagnostics.ProcessStartInfo(exe, args)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
        };
        psi.Environment["LC_ALL"] = "C";
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"lspci {string.Join(' ', args)} exited {p.ExitCode}: {stderr.Result}");
        return stdout;
    }

    /// <summary>Records of <c>lspci -vmm</c>: "Field:\tvalue" lines, records separated by blank lines.</summary>
    public static List<Dictionary<string, string>> VmmRecords(string text)
    {
        var records = new List<Dictionary<string, string>>();
        Dictionary<string, string>? current = null;
        foreach (string line in text.Split('\n'))
        {
            if (line.Length == 0) { current = null; continue; }
            int tab = line.IndexOf(":\t", StringComparison.Ordinal);
            if (tab < 0) continue;
            if (current is null) records.Add(current = new(StringComparer.Ordinal));
            current[line[..tab]] = line[(tab + 2)..];
        }
        return records;
    }

    public static string VendorText(ushort vendor, string? name) => name ?? $"Vendor {vendor:x4}";
    public static string DeviceText(ushort device, string? name) => name ?? $"Device {device:x4}";

    public static string ClassText(uint classCode, PciIds ids)
    {
        uint cls = classCode >> 8;
        byte b = (byte)(classCode >> 16), s = (byte)(classCode >> 8);
        return ids.SubclassName(b, s) ?? (ids.BaseClassName(b) is { } baseName ? $"{baseName} [{cls:x4}]" : $"Class {cls:x4}");
    }
}
