// Usage:
//   MmioFix plan   --xml IN --out OUT --bar SIZE [--bar SIZE ...] [--cpuinfo FILE]
//   MmioFix remove --xml IN --out OUT
// SIZE is a pci-testdev membar (e.g. 256G): each becomes one device with a 64-bit prefetchable BAR2 (REFERENCE §3.4).
// "plan" prints KEY=VALUE lines (OUTCOME, REASON, CHANGES, CURRENT_WINDOW, FIXED_WINDOW, EXPECT_BAR) and writes the
// fixed domain XML; exit 0 = planned (fix or none), 3 = refused, 2 = usage.
using System.Globalization;
using Gallium.Pci;
using Gallium.Pci.Host;
using Gallium.Pci.Mmio;

var opts = new Dictionary<string, List<string>>();
for (int i = 1; i + 1 < args.Length; i += 2)
{
    if (!opts.TryGetValue(args[i], out var list)) opts[args[i]] = list = [];
    list.Add(args[i + 1]);
}
string? One(string key) => opts.TryGetValue(key, out var v) ? v[^1] : null;
if (args.Length == 0 || One("--xml") is not string input || One("--out") is not string output)
{
    Console.Error.WriteLine("usage: MmioFix plan|remove --xml IN --out OUT [--bar SIZE]... [--cpuinfo FILE]");
    return 2;
}
string xml = File.ReadAllText(input);

if (args[0] == "remove")
{
    File.WriteAllText(output, MmioDomainXml.RemoveFix(xml));
    return 0;
}

HostCpu host = One("--cpuinfo") is string cpuinfo ? HostCpu.Parse(File.ReadAllText(cpuinfo)) : HostCpu.Read(new LinuxProcfs("/proc"));
var devices = (opts.GetValueOrDefault("--bar") ?? []).Select((size, i) => new PciDevice
{
    Address = new PciAddress(0, (byte)(0x80 + i), 0, 0), VendorId = 0x1b36, DeviceId = 0x0005,
    Bars = [new PciBar(2, 0, ParseSize(size), Is64Bit: true, IsPrefetchable: true, IsIo: false, IsAssigned: false)],
}).ToList();

var plan = MmioPlanner.PlanForDomain(xml, host, devices);
Console.WriteLine($"OUTCOME={plan.Outcome}");
Console.WriteLine($"REASON={plan.Reason}");
Console.WriteLine($"CHANGES={string.Join(" + ", plan.Changes.Select(Short))}");
Console.WriteLine($"CURRENT_WINDOW={plan.CurrentWindow}");
Console.WriteLine($"FIXED_WINDOW={plan.FixedWindow}");
// With one device, OVMF puts its BAR at the bottom of the window it uses (observed, REFERENCE §6.2).
var used = plan.FixedWindow ?? plan.CurrentWindow;
Console.WriteLine($"EXPECT_BAR={(used is null ? "" : $"0x{used.Base:x}")}");
if (plan.Outcome == MmioPlanOutcome.Refused)
{
    Console.WriteLine($"REFUSAL={plan.Refusal!.ErrorId}");
    File.WriteAllText(output, xml);
    return 3;
}
File.WriteAllText(output, MmioDomainXml.ApplyFix(xml, plan));
return 0;

static string Short(MmioChange c) => c.Kind == MmioChangeKind.MaxPhysAddr
    ? c.MaxPhysAddr!.ToString()
    : $"X-PciMmio64Mb={c.ApertureMiB}";

static ulong ParseSize(string text)
{
    char unit = char.ToUpperInvariant(text[^1]);
    int shift = unit switch { 'K' => 10, 'M' => 20, 'G' => 30, 'T' => 40, _ => 0 };
    string digits = shift == 0 ? text : text[..^1];
    return ulong.Parse(digits, NumberStyles.None, CultureInfo.InvariantCulture) << shift;
}
