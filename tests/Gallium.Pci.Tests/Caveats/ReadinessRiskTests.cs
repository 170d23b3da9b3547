using Gallium.Pci.Host;
using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Caveats;

/// <summary>Test-GalliumPciPassthrough's three answers (not ready, ready but unsafe, ready) for interrupt remapping with
/// allow_unsafe_interrupts and for the ACS override (REFERENCE §8.4), on simulated hosts.</summary>
public sealed class ReadinessRiskTests : SimulatedHostsTest
{
    private PassthroughReadiness Probe(Action<HostTopology> extend) => new ReadinessProbe(Standard(extend).CreateContext()).Probe();

    [Fact]
    public void Remapping_on_is_ready_whatever_allow_unsafe_interrupts_says()
    {
        var r = Probe(t => t.AllowUnsafeInterrupts(true));
        Assert.Equal(ReadinessStatus.Ready, r.Status);
        Assert.True(r.InterruptRemapping);
        Assert.True(r.AllowUnsafeInterrupts);
        Assert.Empty(r.Risks);
        Assert.Equal("Ready for PCI passthrough", r.ToString());
    }

    [Fact]
    public void Remapping_off_without_allow_unsafe_interrupts_is_not_ready_and_says_the_VM_will_not_start()
    {
        var r = Probe(t => t.InterruptRemapping(false));
        Assert.Equal(ReadinessStatus.NotReady, r.Status);
        Assert.False(r.IsReady);
        Assert.False(r.InterruptRemapping);
        Assert.False(r.AllowUnsafeInterrupts);
        string problem = Assert.Single(r.Problems);
        Assert.Contains("VM does not start", problem);
        Assert.Contains("Enable interrupt remapping in the firmware", problem);
        Assert.Contains("allow_unsafe_interrupts=1", problem);
        Assert.Contains("crash or attack the host", problem);   // the security meaning, in one sentence
        Assert.Empty(r.Risks);
    }

    [Fact]
    public void Remapping_off_with_allow_unsafe_interrupts_set_is_ready_but_unsafe_with_remedy_and_security_meaning()
    {
        var r = Probe(t => t.InterruptRemapping(false).AllowUnsafeInterrupts(true));
        Assert.Equal(ReadinessStatus.ReadyButUnsafe, r.Status);
        Assert.True(r.IsReady);
        Assert.Empty(r.Problems);
        var risk = Assert.IsType<UnsafeInterruptsCaveat>(Assert.Single(r.Risks));
        Assert.True(risk.AllowUnsafeInterrupts);
        Assert.Contains("allow_unsafe_interrupts=Y", risk.Reason);
        Assert.Contains("firmware setup", risk.Remedy);
        Assert.Equal(HostIsolation.InterruptSecurity, risk.Security);
        Assert.StartsWith("Ready but unsafe: Interrupt remapping is off", r.ToString());
    }

    [Fact]
    public void Allow_unsafe_interrupts_on_the_command_line_counts_before_vfio_is_loaded()
    {
        var r = Probe(t => t.InterruptRemapping(false).VfioPciLoaded(false).ExtraCommandLine("vfio_iommu_type1.allow_unsafe_interrupts=Y"));
        Assert.Equal(ReadinessStatus.ReadyButUnsafe, r.Status);
        Assert.True(r.AllowUnsafeInterrupts);
    }

    [Fact]
    public void The_ACS_override_makes_a_ready_host_ready_but_unsafe()
    {
        var r = Probe(t => t.ExtraCommandLine("pcie_acs_override=id:1022:1483"));
        Assert.Equal(ReadinessStatus.ReadyButUnsafe, r.Status);
        Assert.Equal("pcie_acs_override=id:1022:1483", r.AcsOverride);
        var risk = Assert.IsType<AcsOverrideCaveat>(Assert.Single(r.Risks));
        Assert.Equal(HostIsolation.AcsSecurity, risk.Security);
        Assert.Contains(ReadinessProbe.GrubHowTo, risk.Remedy);
    }

    [Fact]
    public void Both_at_once_are_two_risks_and_a_blocking_problem_still_wins()
    {
        var unsafeBoth = Probe(t => t.InterruptRemapping(false).AllowUnsafeInterrupts(true).ExtraCommandLine("pcie_acs_override=downstream"));
        Assert.Equal([PassthroughCaveatKind.UnsafeInterrupts, PassthroughCaveatKind.AcsOverride], unsafeBoth.Risks.Select(x => x.Kind));

        var blocked = Probe(t => t.InterruptRemapping(false).ExtraCommandLine("pcie_acs_override=downstream"));
        Assert.Equal(ReadinessStatus.NotReady, blocked.Status);
        Assert.Equal([PassthroughCaveatKind.AcsOverride], blocked.Risks.Select(x => x.Kind));
    }

    [Theory]
    [InlineData("quiet pcie_acs_override=downstream,multifunction", "pcie_acs_override=downstream,multifunction")]
    [InlineData("pcie_acs_override=downstream pcie_acs_override=multifunction", "pcie_acs_override=multifunction")]
    [InlineData("quiet -- pcie_acs_override=downstream", null)]
    [InlineData("pcie_acs_override=", null)]
    [InlineData("no_pcie_acs_override=downstream", null)]
    public void The_ACS_override_is_read_as_the_kernel_reads_its_command_line(string cmdline, string? expected) =>
        Assert.Equal(expected, KernelCommandLine.AcsOverride(cmdline));

    [Theory]
    [InlineData("Y\n", true)]
    [InlineData("N\n", false)]
    [InlineData("1", true)]
    [InlineData("0", false)]
    [InlineData("", null)]
    [InlineData(null, null)]
    public void Bool_module_parameters_read_as_the_kernel_prints_and_parses_them(string? text, bool? expected) =>
        Assert.Equal(expected, KernelCommandLine.ParseBoolParameter(text));
}
