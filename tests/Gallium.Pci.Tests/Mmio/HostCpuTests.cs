using Gallium.Pci.Host;
using Gallium.Pci.Mmio;

namespace Gallium.Pci.Tests.Mmio;

public sealed class HostCpuTests
{
    sealed class OneFileProcfs(string? cpuinfo) : IProcfs
    {
        public string Root => "/proc-under-test";
        public string? ReadText(string path) => path == "cpuinfo" ? cpuinfo : null;
    }

    const string XeonCpuinfo = """
        processor	: 0
        vendor_id	: GenuineIntel
        cpu family	: 6
        model		: 143
        model name	: Intel(R) Xeon(R) Platinum 8480+
        flags		: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc
        address sizes	: 46 bits physical, 57 bits virtual
        power management:

        processor	: 1
        vendor_id	: GenuineIntel
        address sizes	: 46 bits physical, 57 bits virtual

        """;

    [Fact]
    public void Parse_XeonCpuinfo()
    {
        var cpu = HostCpu.Parse(XeonCpuinfo);
        Assert.Equal(new HostCpu(46, CpuVendor.Intel, HasGigabytePages: true), cpu);
    }

    [Fact]
    public void Parse_AmdWithoutGigabytePages()
    {
        var cpu = HostCpu.Parse("vendor_id\t: AuthenticAMD\nflags\t\t: fpu lm nx\naddress sizes\t: 40 bits physical, 48 bits virtual\n");
        Assert.Equal(new HostCpu(40, CpuVendor.Amd, false), cpu);
    }

    [Fact]
    public void Read_GoesThroughTheProcfsSeam()
    {
        Assert.Equal(39, HostCpu.Read(new OneFileProcfs(XeonCpuinfo.Replace("46 bits", "39 bits"))).PhysicalAddressBits);
    }

    [Fact]
    public void Read_ThisMachine_HasSaneBits()
    {
        // The real /proc/cpuinfo of the build host must parse (x86_64 CPUs report 36..52 bits).
        var cpu = HostCpu.Read(new LinuxProcfs("/proc"));
        Assert.InRange(cpu.PhysicalAddressBits, 36, 52);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("processor\t: 0\nvendor_id\t: GenuineIntel\n")]
    [InlineData("address sizes\t: lots of bits physical\n")]
    public void Missing_ThrowsHostAddressBitsUnknown(string? cpuinfo)
    {
        var e = Assert.Throws<HostAddressBitsUnknownException>(() => HostCpu.Read(new OneFileProcfs(cpuinfo)));
        Assert.True(e.IsHostLevel);
        Assert.Equal("HostAddressBitsUnknown", e.ErrorId);
        Assert.Equal(ErrorKind.ReadError, e.Kind);
    }

    [Theory]
    [InlineData("GenuineIntel", CpuVendor.Intel)]
    [InlineData("AuthenticAMD", CpuVendor.Amd)]
    [InlineData("HygonGenuine", CpuVendor.Other)]
    [InlineData(null, CpuVendor.Other)]
    public void VendorFromId(string? id, CpuVendor expected) => Assert.Equal(expected, HostCpu.VendorFromId(id));
}
