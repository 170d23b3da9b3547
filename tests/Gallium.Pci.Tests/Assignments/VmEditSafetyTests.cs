using System.Runtime.Versioning;
using System.Xml.Linq;
using Gallium.Pci.Assignments;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;
using Gallium.Pci.Testing;
using Gallium.Pci.Tests.Libvirt;

namespace Gallium.Pci.Tests.Assignments;

/// <summary>The VM edit is whole or not at all: a stop at every narration point rolls it back (or, after the last step,
/// finishes it); a definition another tool edits is never redefined from a stale read; nothing Gallium did not put in is
/// ever lost, secrets included.</summary>
[Collection(LibvirtdCollection.Name)]
[SupportedOSPlatform("linux")]
public sealed class VmEditSafetyTests(LibvirtdFixture fixture)
{
    private const string H100 = StandardHost.ComputeGpu, Gpu = StandardHost.Gpu, GpuAudio = StandardHost.GpuAudio;

    private static readonly XNamespace QemuNs = MmioDomainXml.QemuNamespace;

    /// <summary>What Gallium's edits decide: the VM's hostdevs, the root ports Gallium added, and its MMIO settings.</summary>
    private static string State(VmHarness h, string vm)
    {
        string xml = h.Definition(vm);
        var controllers = XDocument.Parse(xml).Root!.Element("devices")!.Elements("controller")
            .Select(c => (string?)c.Element("alias")?.Attribute("name")).OfType<string>()
            .Where(a => a.StartsWith(DomainXml.RootPortAliasPrefix, StringComparison.Ordinal));
        return string.Join(" ", DomainXml.ReadPciHostdevs(xml).Select(d => d.Address.ToString()).Order())
            + " | " + string.Join(" ", controllers.Order()) + " | " + MmioDomainXml.FixFingerprint(xml);
    }

    public static TheoryData<string> Commands => new() { "Add", "Remove", "Repair" };

    [Theory]
    [MemberData(nameof(Commands))]
    public void A_stop_at_every_narration_point_rolls_the_VM_edit_back_or_finishes_it_never_half(string command)
    {
        using var h = new VmHarness(fixture);
        // Add: the fix, a root port per device and three hostdevs (H100; GPU + audio in one multi-function slot).
        // Remove: the same taken out again. Repair: the fix alone, for hostdevs added by hand.
        string Setup()
        {
            string vm = h.DefineVm(command.ToLowerInvariant());
            if (command == "Remove") h.Do(VmDeviceAction.Add, vm, H100, Gpu);
            if (command == "Repair") h.Libvirt.AttachDeviceToConfig(vm, DomainXml.BuildHostdev(PciAddress.Parse(H100)));
            return vm;
        }
        var request = (string vm) => command switch
        {
            "Add" => h.Request(VmDeviceAction.Add, vm, H100, Gpu),
            "Remove" => h.Request(VmDeviceAction.Remove, vm, H100, Gpu),
            _ => VmDeviceRequest.Repair(vm),
        };

        // The whole run once, counting its narration points, to know the state it ends in.
        string reference = Setup();
        var said = new List<string>();
        h.Runner.Run(h.Planner.Plan(request(reference)), new Interruption(said.Add));
        string finished = State(h, reference);
        Assert.True(said.Count >= 4, string.Join(Environment.NewLine, said));
        h.Undefine(reference);   // its devices are free again for the VMs below

        for (int k = 1; k <= said.Count; k++)
        {
            string vm = Setup();
            string before = State(h, vm);
            var change = h.Planner.Plan(request(vm));
            Assert.Empty(change.Refusals);
            Assert.False(change.IsNoOp);
            int heard = 0;
            var stop = new OperationCanceledException($"stop at narration point {k}");
            var e = Assert.Throws<VmChangeInterruptedException>(() => h.Runner.Run(change, new Interruption(m =>
            {
                if (++heard == k) throw stop;
            })));
            Assert.Same(stop, e.Cause);
            string after = State(h, vm);
            if (e.RolledBack) Assert.True(before == after, $"stop at point {k} ({said[k - 1]}): not rolled back\nbefore {before}\nafter  {after}");
            else Assert.True(finished == after, $"stop at point {k} ({said[k - 1]}): {e.ErrorId} {e.Message} said finished but is\n{after}\nnot {finished}");
            Assert.Empty(e.Leftovers);
            // Before the last step, a stop is always a rollback.
            if (k < said.FindLastIndex(l => l.StartsWith("step ", StringComparison.Ordinal)) + 1) Assert.True(e.RolledBack, $"point {k}: {said[k - 1]}");
            h.Undefine(vm);
        }
    }

    [Fact]
    public void An_edit_another_tool_makes_between_the_two_reads_is_kept_and_the_fix_is_planned_again_from_it()
    {
        using var h = new VmHarness(fixture);
        string vm = h.DefineVm("foreign");
        var change = h.Plan(VmDeviceAction.Add, vm, H100);
        // Call 1 is the plan made again under the lock; call 2 the define step's first read: right after it, another tool edits.
        h.Libvirt.AfterGetDefinition = (n, name) =>
        {
            if (n == 2) fixture.Libvirt.AttachDeviceToConfig(name, Channel("org.other.tool.0"));
        };
        var said = new List<string>();
        h.Run(change, said.Add);
        Assert.Contains(said, l => l.Contains("changed meanwhile", StringComparison.Ordinal));
        string xml = h.Definition(vm);
        Assert.Contains("org.other.tool.0", xml);
        Assert.True(MmioDomainXml.HasFix(xml));
        Assert.Equal([PciAddress.Parse(H100)], h.Held(vm));
    }

    [Theory]
    [InlineData(VmDeviceAction.Add)]
    [InlineData(VmDeviceAction.Remove)]
    public void A_tool_that_keeps_editing_is_waited_for_then_refused_VmDefinitionBusy_with_nothing_lost_and_the_VM_as_it_was(VmDeviceAction action)
    {
        using var h = new VmHarness(fixture) { Options = new() { QuietPeriod = TimeSpan.FromMilliseconds(50), BusyTimeout = TimeSpan.FromMilliseconds(600) } };
        string vm = h.DefineVm("busy");
        if (action == VmDeviceAction.Remove) h.Do(VmDeviceAction.Add, vm, H100);
        string before = State(h, vm);
        var change = h.Plan(action, vm, H100);
        var written = new List<string>();
        h.Libvirt.AfterGetDefinition = (n, name) =>
        {
            if (n < 2) return;
            string channel = $"org.other.tool.{n}";
            fixture.Libvirt.AttachDeviceToConfig(name, Channel(channel));
            written.Add(channel);
        };
        var e = Assert.Throws<VmDefinitionBusyException>(() => h.Run(change));
        h.Libvirt.AfterGetDefinition = null;
        Assert.Equal(("VmDefinitionBusy", ErrorKind.ResourceBusy), (e.ErrorId, e.Kind));
        string xml = h.Definition(vm);
        Assert.NotEmpty(written);
        Assert.All(written, c => Assert.Contains(c, xml));
        Assert.Equal(before, State(h, vm));
    }

    [Fact]
    public void A_rich_definition_is_identical_after_Add_and_Remove_secrets_metadata_hostdevs_qemu_args_cpu_title_all_kept()
    {
        using var h = new VmHarness(fixture);
        string vm = h.DefineVm("rich", uefi: true,
            new XElement("title", "Render node 7 <GPU>"),
            new XElement("description", "Owned by the render team; ask before changing.\nSecond line & more."),
            XElement.Parse("<metadata><app:owner xmlns:app='https://example.com/other-tool/1' team='render' ticket='OPS-1234'><app:note>do not move</app:note></app:owner></metadata>"),
            XElement.Parse("<cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model><feature policy='require' name='pdpe1gb'/><feature policy='disable' name='svm'/></cpu>"),
            XElement.Parse("<graphics type='vnc' port='-1' autoport='yes' passwd='vnc-s3cr'/>"),
            XElement.Parse("<graphics type='spice' autoport='yes' passwd='spice-s3cret'/>"),
            XElement.Parse("<video><model type='qxl'/></video>"),
            XElement.Parse("<hostdev mode='subsystem' type='pci' managed='no'><source><address domain='0x0000' bus='0xee' slot='0x00' function='0x0'/></source></hostdev>"),
            new XElement(QemuNs + "commandline", new XAttribute(XNamespace.Xmlns + "qemu", MmioDomainXml.QemuNamespace),
                new XElement(QemuNs + "arg", new XAttribute("value", "-msg")), new XElement(QemuNs + "arg", new XAttribute("value", "timestamp=on"))));
        string before = h.Definition(vm);
        Assert.Contains("passwd='vnc-s3cr'", before);

        var add = h.Plan(VmDeviceAction.Add, vm, H100, Gpu);
        Assert.NotEqual(MmioFixChange.None, add.Mmio!.Change);
        h.Run(add);
        string added = h.Definition(vm);
        foreach (var kept in new[] { "passwd='vnc-s3cr'", "passwd='spice-s3cret'", @"ticket=""OPS-1234""", "timestamp=on", "bus='0xee'", "Render node 7", "name='svm'" })
            Assert.Contains(kept, added);

        h.Do(VmDeviceAction.Remove, vm, H100, Gpu);
        Assert.Equal(before, h.Definition(vm));
    }

    private static string Channel(string name) =>
        new XElement("channel", new XAttribute("type", "pty"), new XElement("target", new XAttribute("type", "virtio"), new XAttribute("name", name))).ToString();
}
