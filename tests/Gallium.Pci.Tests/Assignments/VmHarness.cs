using System.Runtime.Versioning;
using System.Xml.Linq;
using Gallium.Pci.Assignments;
using Gallium.Pci.Host;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Mmio;
using Gallium.Pci.Passthrough;
using Gallium.Pci.Testing;
using Gallium.Pci.Tests.Libvirt;

namespace Gallium.Pci.Tests.Assignments;

/// <summary>A simulated host (its kernel, host lock and machine id) joined with the real libvirtd: VMs defined there hold
/// the simulated host's devices, as Add would put them (define does not check the host, REFERENCE §1).</summary>
[SupportedOSPlatform("linux")]
internal sealed class VmHarness : IDisposable
{
    private readonly LibvirtdFixture _fixture;
    private readonly List<string> _vms = [];

    /// <param name="topology">The host; by default the standard one with the GPU, its audio, the H100 and the free NIC on vfio-pci.</param>
    public VmHarness(LibvirtdFixture fixture, HostTopology? topology = null)
    {
        _fixture = fixture;
        Root = SimulatedHosts.CreateTempRoot();
        Kernel = (topology ?? SimulatedHosts.StandardTopology(new HostOptions())).Build(Root);
        Context = Kernel.CreateContext();
        Libvirt = new InterceptingLibvirt(fixture.Libvirt);
        // Enabled the way an admin does it (records and rules too): Add takes only Enabled devices.
        var endpoints = topology is null
            ? [StandardHost.Gpu, StandardHost.ComputeGpu, StandardHost.FreeNic]
            : Kernel.DeviceAddresses.Where(a => Inventory.Read(PciAddress.Parse(a)) is { IsEndpoint: true, IommuGroup: not null, ClassCode: >= 0x030000 and < 0x040000 }).ToArray();
        var planner = new PassthroughPlanner(Context, new NoVms());
        foreach (string a in endpoints) new PlanRunner(Context).Run(planner.PlanEnable(PciAddress.Parse(a)));
    }

    /// <summary>Enable asks no one; the VM side reads libvirt itself.</summary>
    private sealed class NoVms : IAssignmentLookup
    {
        public IReadOnlyList<string> VmsReferencing(IReadOnlyCollection<PciAddress> addresses) => [];
    }

    public string Root { get; }
    public SimulatedKernel Kernel { get; }
    public HostContext Context { get; }
    public InterceptingLibvirt Libvirt { get; }
    /// <summary>A short quiet period: the waiting itself is proved in the concurrency tests, not on every run.</summary>
    public VmChangeOptions Options { get; set; } = new() { QuietPeriod = TimeSpan.FromMilliseconds(20), BusyTimeout = TimeSpan.FromSeconds(3) };
    public DeviceInventory Inventory => new(Context);
    public HostCpu Cpu => HostCpu.Read(Context.Procfs);

    public VmDevicePlanner Planner => new(Libvirt, Inventory, () => Cpu);
    public VmDeviceRunner Runner => new(Libvirt, Planner, Context, () => Cpu, Options);

    /// <summary>A diskless TCG q35 VM (OVMF unless <paramref name="uefi"/> is false); <paramref name="extra"/> are children
    /// added to the domain element (devices go into &lt;devices&gt;).</summary>
    public string DefineVm(string what, bool uefi = true, params XElement[] extra)
    {
        string name = _fixture.NewName(what);
        var os = new XElement("os", new XElement("type", new XAttribute("arch", "x86_64"), new XAttribute("machine", "q35"), "hvm"));
        if (uefi)
            os.Add(new XElement("loader", new XAttribute("readonly", "yes"), new XAttribute("type", "pflash"), "/usr/share/OVMF/OVMF_CODE_4M.fd"),
                new XElement("nvram", new XAttribute("template", "/usr/share/OVMF/OVMF_VARS_4M.fd")));
        var devices = new XElement("devices", new XElement("emulator", "/usr/bin/qemu-system-x86_64"));
        var domain = new XElement("domain", new XAttribute("type", "qemu"), new XElement("name", name),
            new XElement("memory", new XAttribute("unit", "MiB"), 64), new XElement("vcpu", 1), os, new XElement("features", new XElement("acpi")), devices);
        foreach (var e in extra)
        {
            if (e.Name.LocalName is "hostdev" or "graphics" or "channel" or "controller" or "interface" or "video" or "memballoon") devices.Add(e);
            else domain.Add(e);
        }
        _vms.Add(name);
        Libvirt.DefineDomain(domain.ToString());
        return name;
    }

    /// <summary>Removes a VM now (its devices are free for the next one: one device, one VM).</summary>
    public void Undefine(string vm)
    {
        _fixture.Remove(vm);
        _vms.Remove(vm);
    }

    public VmDeviceRequest Request(VmDeviceAction action, string vm, params string[] addresses) =>
        new(action, vm, addresses.Select(PciAddress.Parse).ToArray());

    public VmDeviceChange Plan(VmDeviceAction action, string vm, params string[] addresses) => Planner.Plan(Request(action, vm, addresses));

    public VmDeviceChange Run(VmDeviceChange change, Action<string>? narrate = null) => Runner.Run(change, new Interruption(narrate ?? (_ => { })));

    public VmDeviceChange Do(VmDeviceAction action, string vm, params string[] addresses) => Run(Plan(action, vm, addresses));

    public string Definition(string vm) => Libvirt.GetDefinition(vm);
    public IReadOnlyList<PciAddress> Held(string vm) => DomainXml.ReadPciHostdevs(Definition(vm)).Select(h => h.Address).ToArray();
    public MmioVmSettingsView Mmio(string vm) => new(MmioDomainXml.ReadSettings(Definition(vm)), MmioDomainXml.HasFix(Definition(vm)));

    public void Dispose()
    {
        foreach (var vm in _vms) _fixture.Remove(vm);
        Kernel.DeleteTree();
    }
}

/// <summary>What a definition says about its window: maxphysaddr, forced aperture, and whether Gallium's marker is there.</summary>
internal sealed record MmioVmSettingsView(VmMmioSettings Settings, bool HasGalliumFix)
{
    public bool HasAnyFix => HasGalliumFix || Settings.MaxPhysAddr is not null || Settings.OvmfApertureMiB is not null;
}

/// <summary>libvirt with hooks: another tool's edit made at a chosen moment (between Gallium's two reads of a definition,
/// right before its define), and every call counted.</summary>
internal sealed class InterceptingLibvirt(ILibvirt inner) : ILibvirt
{
    /// <summary>Called after each GetDefinition with the call's number (from 1) and the VM; a test edits the VM here.</summary>
    public Action<int, string>? AfterGetDefinition { get; set; }
    public int GetDefinitionCalls { get; private set; }
    public int Defines { get; private set; }
    /// <summary>Makes the next attach/detach fail, as libvirt would refuse it (for the rollback tests).</summary>
    public Func<string, bool>? FailEdit { get; set; }

    public string Uri => inner.Uri;
    public Version LibraryVersion => inner.LibraryVersion;
    public IReadOnlyList<LibvirtDomain> ListDomains() => inner.ListDomains();
    public LibvirtDomain GetDomain(string vmName) => inner.GetDomain(vmName);

    public string GetDefinition(string vmName)
    {
        string xml = inner.GetDefinition(vmName);
        AfterGetDefinition?.Invoke(++GetDefinitionCalls, vmName);
        return xml;
    }

    public void AttachDeviceToConfig(string vmName, string deviceXml)
    {
        if (FailEdit?.Invoke(deviceXml) == true) throw Refused(vmName);
        inner.AttachDeviceToConfig(vmName, deviceXml);
    }

    public void DetachDeviceFromConfig(string vmName, string deviceXml)
    {
        if (FailEdit?.Invoke(deviceXml) == true) throw Refused(vmName);
        inner.DetachDeviceFromConfig(vmName, deviceXml);
    }

    public LibvirtDomain DefineDomain(string domainXml)
    {
        Defines++;
        return inner.DefineDomain(domainXml);
    }

    public LibvirtDomain CreateTransientDomain(string domainXml, bool paused) => inner.CreateTransientDomain(domainXml, paused);
    public void StartDomain(string vmName, bool paused) => inner.StartDomain(vmName, paused);
    public void DestroyDomain(string vmName) => inner.DestroyDomain(vmName);
    public void UndefineDomain(string vmName) => inner.UndefineDomain(vmName);
    public void Dispose() { }   // the fixture's connection outlives each test

    private static LibvirtOperationFailedException Refused(string vm) =>
        new("edit the definition of VM '" + vm + "'", vm, new LibvirtError(LibvirtErrorCode.OperationFailed, LibvirtErrorDomain.Qemu, "injected failure"));
}
