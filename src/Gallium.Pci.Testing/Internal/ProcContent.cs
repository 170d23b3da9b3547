using System.Globalization;
using System.Text;

namespace Gallium.Pci.Testing.Internal;

/// <summary>Text of the /proc files, in the kernel's exact formats.</summary>
internal static class ProcContent
{
    private const string IntelFlags =
        "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe " +
        "syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf " +
        "tsc_known_freq pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 " +
        "x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault epb cat_l3 " +
        "invpcid_single ssbd mba ibrs ibpb stibp ibrs_enhanced tpr_shadow flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 " +
        "avx2 smep bmi2 erms invpcid cqm rdt_a avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb intel_pt avx512cd " +
        "sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves split_lock_detect avx_vnni avx512_bf16 wbnoinvd dtherm ida arat " +
        "pln pts hwp avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme " +
        "avx512_vpopcntdq la57 rdpid bus_lock_detect cldemote movdiri movdir64b enqcmd fsrm md_clear serialize tsxldtrk pconfig " +
        "arch_lbr amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d arch_capabilities";

    private const string AmdFlags =
        "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext " +
        "fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid aperfmperf rapl pni pclmulqdq " +
        "monitor ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy svm extapic " +
        "cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt tce topoext perfctr_core perfctr_nb bpext perfctr_llc " +
        "mwaitx cpb cat_l3 cdp_l3 invpcid_single hw_pstate ssbd mba ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 smep bmi2 invpcid " +
        "cqm rdt_a rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total " +
        "cqm_mbm_local clzero irperf xsaveerptr rdpru wbnoinvd amd_ppin arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean " +
        "flushbyasid decodeassists pausefilter pfthreshold v_vmsave_vmload vgif v_spec_ctrl umip pku ospke vaes vpclmulqdq rdpid " +
        "overflow_recov succor smca fsrm";

    public static string CpuInfo(KernelConfig c)
    {
        var sb = new StringBuilder();
        var nodes = c.EffectiveNumaNodes.Select(Gallium.Pci.Numa.NumaTopology.ParseList).ToArray();
        var cpus = nodes.SelectMany((list, node) => list.Select(cpu => (Cpu: cpu, Node: node))).OrderBy(x => x.Cpu).ToArray();
        foreach (var (cpu, node) in cpus)
        {
            int siblings = nodes[node].Count, core = Array.IndexOf(nodes[node].ToArray(), cpu);
            sb.Append(CultureInfo.InvariantCulture, $"processor\t: {cpu}\n");
            if (c.Amd)
            {
                sb.Append("vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7543 32-Core Processor\n");
                sb.Append("stepping\t: 1\nmicrocode\t: 0xa0011d1\ncpu MHz\t\t: 2800.000\ncache size\t: 512 KB\n");
            }
            else
            {
                sb.Append("vendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\nmodel name\t: Intel(R) Xeon(R) w5-3435X\n");
                sb.Append("stepping\t: 8\nmicrocode\t: 0x2b000571\ncpu MHz\t\t: 3100.000\ncache size\t: 46080 KB\n");
            }
            sb.Append(CultureInfo.InvariantCulture,
                $"physical id\t: {node}\nsiblings\t: {siblings}\ncore id\t\t: {core}\ncpu cores\t: {siblings}\napicid\t\t: {cpu * 2}\ninitial apicid\t: {cpu * 2}\n");
            sb.Append("fpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: ").Append(c.Amd ? "16" : "31").Append("\nwp\t\t: yes\n");
            sb.Append("flags\t\t: ").Append(c.Amd ? AmdFlags : IntelFlags).Append('\n');
            if (!c.Amd) sb.Append("vmx flags\t: vnmi preemption_timer posted_intr invvpid ept_x_only ept_ad ept_1gb flexpriority apicv tsc_offset vtpr mtf vapic ept vpid unrestricted_guest\n");
            sb.Append("bugs\t\t: spectre_v1 spectre_v2 spec_store_bypass\n");
            sb.Append("bogomips\t: ").Append(c.Amd ? "5600.00" : "6200.00").Append('\n');
            sb.Append(c.Amd ? "TLB size\t: 2560 4K pages\n" : "");
            sb.Append("clflush size\t: 64\ncache_alignment\t: 64\n");
            sb.Append(CultureInfo.InvariantCulture, $"address sizes\t: {c.PhysicalAddressBits} bits physical, {c.VirtualAddressBits} bits virtual\n");
            sb.Append("power management:").Append(c.Amd ? " ts ttp tm hwpstate cpb eff_freq_ro [13] [14]" : "").Append("\n\n");
        }
        return sb.ToString();
    }

    /// <summary>proc/self/mountinfo: the root filesystem on the NVMe marked RootFilesystem (partition 2), /boot/efi on partition 1.</summary>
    public static string MountInfo(IEnumerable<SimDevice> devices)
    {
        var root = devices.SelectMany(d => d.Children.OfType<DiskChild>()).FirstOrDefault(c => c.RootFilesystem);
        string n = root is null ? "" : root.Controller + "n1";
        var sb = new StringBuilder();
        sb.Append(root is null
            ? "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg0-root rw,errors=remount-ro\n"
            : string.Create(CultureInfo.InvariantCulture, $"22 1 259:{root.FirstMinor + 2} / / rw,relatime shared:1 - ext4 /dev/{n}p2 rw,errors=remount-ro\n"));
        sb.Append("23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n");
        sb.Append("24 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw\n");
        sb.Append("25 22 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=32829428k,nr_inodes=8207357,mode=755\n");
        sb.Append("26 22 0:25 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=6571940k,mode=755\n");
        if (root is not null)
            sb.Append(CultureInfo.InvariantCulture,
                $"27 22 259:{root.FirstMinor + 1} / /boot/efi rw,relatime shared:31 - vfat /dev/{n}p1 rw,fmask=0077,dmask=0077,codepage=437,iocharset=ascii,shortname=mixed,utf8,errors=remount-ro\n");
        return sb.ToString();
    }

    /// <summary>proc/iomem as root reads it ([K] kernel/resource.c r_show: "%*s%0*llx-%0*llx : %s", two spaces per level):
    /// RAM and firmware ranges, the root bus windows, each bridge's windows as "PCI Bus DDDD:BB", each memory BAR under the
    /// function's name, and a firmware framebuffer inside the BAR it holds (REFERENCE §8.4).</summary>
    public static string IoMem(IReadOnlyList<SimDevice> order, IReadOnlyDictionary<SimDevice, ulong[]> windows)
    {
        var entries = new List<(ulong Start, ulong End, string Name)>
        {
            (0x0, 0xfff, "Reserved"), (0x1000, 0x9ffff, "System RAM"), (0xa0000, 0xfffff, "Reserved"), (0xf0000, 0xfffff, "System ROM"),
            (0x100000, 0x7fffffff, "System RAM"), (0x1000000, 0x1ffffff, "Kernel code"), (0x2000000, 0x25fffff, "Kernel data"),
            (0xfec00000, 0xfec003ff, "IOAPIC 0"), (0xfed00000, 0xfed003ff, "HPET 0"), (0xfee00000, 0xfee00fff, "Local APIC"),
            (0x100000000, 0x107fffffff, "System RAM"),
        };
        foreach (var domain in order.Select(d => d.Address.Domain).Distinct())
        {
            string root = string.Create(CultureInfo.InvariantCulture, $"PCI Bus {domain:x4}:00");
            entries.Add((0x80000000, 0xfebfffff, root));
            entries.Add((0x2000000000, 0x7fffffffff, root));
        }
        static bool Related(SimDevice a, SimDevice b)
        {
            for (var p = a; p is not null; p = p.Parent) if (p == b) return true;
            for (var p = b; p is not null; p = p.Parent) if (p == a) return true;
            return false;
        }
        // The builder places BARs host-wide, not per bridge, so sibling bridges' windows can interleave; such a window could not
        // nest in the real resource tree and is left out (the BARs below it still show).
        var bridgeWindows = windows.Where(kv => kv.Key.IsBridge)
            .SelectMany(kv => new[] { 1, 2 }.Where(k => kv.Value[k * 2 + 1] != 0).Select(k => (Bridge: kv.Key, Start: kv.Value[k * 2], End: kv.Value[k * 2 + 1])))
            .ToList();
        foreach (var w in bridgeWindows)
        {
            if (bridgeWindows.Any(o => !Related(o.Bridge, w.Bridge) && o.Start <= w.End && w.Start <= o.End)) continue;
            entries.Add((w.Start, w.End, string.Create(CultureInfo.InvariantCulture, $"PCI Bus {w.Bridge.Address.Domain:x4}:{w.Bridge.SecondaryBus:x2}")));
        }
        foreach (var d in order)
        {
            foreach (var bar in d.Bars.Where(b => b.Assigned && b.Type != BarType.Io))
                entries.Add((bar.Start, bar.Start + bar.Size - 1, d.Bdf));
            if (d.FirmwareFramebuffer is { } holder)
            {
                var held = d.FramebufferBar >= 0
                    ? d.Bars.FirstOrDefault(b => b.Index == d.FramebufferBar)
                    : d.Bars.Where(b => b.Type != BarType.Io && b.Assigned).OrderByDescending(b => b.Prefetchable).ThenByDescending(b => b.Size).FirstOrDefault();
                if (held is null || !held.Assigned || held.Type == BarType.Io)
                    throw new InvalidOperationException($"{d.Bdf}: a firmware framebuffer needs an assigned memory BAR.");
                // 1920x1080 at 32 bpp, rounded to pages, as efifb maps the GOP mode (never more than the BAR).
                entries.Add((held.Start, held.Start + Math.Min(held.Size, 0x7e9000UL) - 1, holder));
            }
        }
        // Parents before children: by start, the larger range first; the depth is the number of open ranges containing it.
        var sb = new StringBuilder();
        var open = new Stack<ulong>();
        foreach (var (start, end, name) in entries.OrderBy(e => e.Start).ThenByDescending(e => e.End))
        {
            while (open.Count > 0 && open.Peek() < start) open.Pop();
            // "%0*llx" with width 8: at least eight digits, more for addresses above 4 GiB ("100000000-8ffffffff").
            sb.Append(' ', open.Count * 2).Append(start.ToString("x8", CultureInfo.InvariantCulture)).Append('-')
              .Append(end.ToString("x8", CultureInfo.InvariantCulture)).Append(" : ").Append(name).Append('\n');
            open.Push(end);
        }
        return sb.ToString();
    }

    /// <summary>proc/net/route (the kernel pads each line to 127 characters).</summary>
    public static string Routes(IEnumerable<NetChild> interfaces)
    {
        var sb = new StringBuilder();
        void Line(string text) => sb.Append(text.PadRight(127)).Append('\n');
        Line("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT");
        int subnet = 1;
        foreach (var nic in interfaces)
        {
            string net = string.Create(CultureInfo.InvariantCulture, $"00{subnet:X2}A8C0");
            string gateway = string.Create(CultureInfo.InvariantCulture, $"01{subnet:X2}A8C0");
            if (nic.DefaultRoute) Line($"{nic.Interface}\t00000000\t{gateway}\t0003\t0\t0\t100\t00000000\t0\t0\t0");
            Line($"{nic.Interface}\t{net}\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0");
            subnet++;
        }
        return sb.ToString();
    }

    /// <summary>proc/interrupts: one MSI-X vector per bound function; "IR-" prefix when interrupt remapping is on.</summary>
    public static string Interrupts(IReadOnlyList<SimDevice> bound, bool remapping)
    {
        var sb = new StringBuilder();
        sb.Append("            CPU0       CPU1       \n");
        sb.Append("   0:         36          0   IO-APIC   2-edge      timer\n");
        sb.Append("   9:          0          0   IO-APIC   9-fasteoi   acpi\n");
        int irq = 120;
        foreach (var d in bound)
        {
            string label = d.Children.OfType<NetChild>().FirstOrDefault()?.Interface
                ?? (d.Children.OfType<DiskChild>().FirstOrDefault() is { } disk ? disk.Controller + "q0" : null)
                ?? d.HostDriver ?? d.Bdf;
            sb.Append(CultureInfo.InvariantCulture,
                $" {irq++,3}:      {1000 + irq * 7,5}          0  {(remapping ? "IR-" : "")}PCI-MSIX-{d.Bdf}    0-edge      {label}\n");
        }
        sb.Append(" NMI:          0          0   Non-maskable interrupts\n");
        sb.Append(" LOC:     123456     123457   Local timer interrupts\n");
        if (remapping) sb.Append(" PIN:          0          0   Posted-interrupt notification event\n");
        return sb.ToString();
    }
}
