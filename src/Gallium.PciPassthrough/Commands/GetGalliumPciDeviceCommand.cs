using System.Management.Automation;
using Gallium.Pci;
using Gallium.Pci.Host;
using Gallium.Pci.Libvirt;
using Gallium.Pci.Assignments;
using Gallium.PciPassthrough.Completers;

namespace Gallium.PciPassthrough.Commands;

/// <summary>Lists the host's PCI functions as the kernel sees them, with names, drivers, IOMMU groups and BARs.</summary>
[Cmdlet(VerbsCommon.Get, "GalliumPciDevice", DefaultParameterSetName = AddressSet, HelpUri = HelpLinks.GetGalliumPciDevice)]
[OutputType(typeof(PciDevice))]
public sealed class GetGalliumPciDeviceCommand : LibvirtCmdlet
{
    private const string AddressSet = "Address";
    private const string GroupSet = "InputObject";

    // -Address takes piped strings and binds devices by property name. A piped IommuGroup binds -InputObject in its own
    // parameter set, which keeps PowerShell from coercing the group to a string for -Address.
    [Parameter(ParameterSetName = AddressSet, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(PciAddressCompleter))]
    public string[]? Address { get; set; }

    /// <summary>The members of these IOMMU groups (from Get-GalliumIommuGroup).</summary>
    [Parameter(ParameterSetName = GroupSet, Mandatory = true, ValueFromPipeline = true)]
    public IommuGroup[]? InputObject { get; set; }

    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int[]? IommuGroup { get; set; }

    [Parameter]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Class { get; set; }

    [Parameter]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string[]? Driver { get; set; }

    [Parameter]
    [Alias("Passthrough")]
    public PassthroughState[]? PassthroughState { get; set; }

    /// <summary>Only functions on these NUMA nodes (a function whose node the kernel does not know matches none).</summary>
    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int[]? NumaNode { get; set; }

    private IReadOnlyList<PciDevice>? _devices;

    protected override void BeginProcessing() => RequireLocalLibvirt();

    // Assigned and AssignedTo come from libvirt's VM definitions; without libvirt the kernel's view still stands.
    // libvirt is loaded, connected and listed on a worker while this thread reads sysfs: in a fresh pwsh loading
    // libvirt.so.0 and its ~55 libraries is the largest part of the first call (issue 18), and the two are independent.
    private IReadOnlyList<PciDevice> ReadDevices()
    {
        WriteVerbose($"libvirt: connect to {ResolvedUri} (read-only)");
        string? uri = Uri;
        var connector = HostContext.Libvirt;   // read here: session state is this thread's
        var listing = Task.Run(() =>
        {
            using var libvirt = connector.Open(uri, readOnly: true);
            return AssignmentIndex.FromDomains(libvirt.ListDomains());
        });
        IReadOnlyList<PciDevice> devices;
        try { devices = NewInventory().ReadAll(); }
        catch
        {
            _ = listing.ContinueWith(static t => t.Exception, TaskScheduler.Default);  // observed: the sysfs failure is the one reported
            throw;
        }
        try
        {
            // A wedged libvirtd never answers: Ctrl+C leaves the listing behind (its worker ends with the process).
            Task.WaitAny([listing], StopToken);   // a failed listing is reported below, unwrapped
            return AssignmentView.Annotate(devices, listing.GetAwaiter().GetResult());
        }
        catch (LibvirtNotInstalledException e) { WriteVerbose(e.Message); }
        catch (GalliumException e)
        {
            WriteWarning($"Could not ask libvirt which VMs hold these devices ({e.Message}); devices held by VMs show as Enabled, and AssignedTo is empty.");
        }
        return devices;
    }

    private IReadOnlyList<ClassFilter>? _classes;
    private IReadOnlyList<WildcardPattern>? _drivers;

    protected override void ProcessRecord()
    {
        // Filters compile once; a pattern that does not parse is reported once and filters nothing (like a missing literal).
        if (Class is not null && _classes is null)
        {
            _classes = Class.Select(c => ClassFilter.Create(c, WriteError)).OfType<ClassFilter>().ToArray();
            if (_classes.Count == 0) return;
        }
        if (Driver is not null && _drivers is null)
        {
            _drivers = Driver.Select(d => Patterns.Compile(nameof(Driver), d, WriteError)).OfType<WildcardPattern>().ToArray();
            if (_drivers.Count == 0) return;
        }
        if (_classes is { Count: 0 } || _drivers is { Count: 0 }) return;
        _devices ??= ReadDevices();
        var selector = Address is null ? null : AddressSelector.Create(Address, WriteError);
        if (selector is { Literals.Count: 0, HasPatterns: false }) return; // every address was malformed: already reported

        foreach (var (text, address) in selector?.Literals ?? [])
        {
            if (!_devices.Any(d => d.Address == address))
                WriteError(new PciDeviceNotFoundException(address));
        }
        foreach (var device in _devices)
        {
            if (selector is not null && !selector.Matches(device.Address)) continue;
            if (IommuGroup is not null && (device.IommuGroup is not int g || !IommuGroup.Contains(g))) continue;
            if (InputObject is not null && (device.IommuGroup is not int ig || !InputObject.Any(x => x.Id == ig))) continue;
            if (_classes is not null && !_classes.Any(c => c.Matches(device))) continue;
            if (_drivers is not null && !_drivers.Any(d => d.IsMatch(device.Driver ?? ""))) continue;
            if (PassthroughState is not null && !PassthroughState.Contains(device.PassthroughState)) continue;
            if (NumaNode is not null && (device.NumaNode is not int node || !NumaNode.Contains(node))) continue;
            WriteObject(device);
        }
    }
}

/// <summary>-Class accepts a class name or its start ("Display", "VGA*"), or a hex class code prefix ("03", "0x0300").</summary>
internal sealed class ClassFilter
{
    private readonly string? _hexPrefix;
    private readonly WildcardPattern _pattern;

    private ClassFilter(string? hexPrefix, WildcardPattern pattern)
    {
        _hexPrefix = hexPrefix;
        _pattern = pattern;
    }

    /// <summary>The filter, or null (reported as ClassPatternInvalid) when its pattern does not parse.</summary>
    public static ClassFilter? Create(string filter, Action<GalliumException> invalid)
    {
        string f = filter.Trim();
        string hexFilter = f.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? f[2..] : f;
        string? hex = hexFilter.Length is > 0 and <= 6 && hexFilter.All(char.IsAsciiHexDigit) && hexFilter.Length % 2 == 0 ? hexFilter : null;
        var pattern = Patterns.Compile("Class", WildcardPattern.ContainsWildcardCharacters(f) ? f : f + "*", invalid);
        return pattern is null ? null : new ClassFilter(hex, pattern);
    }

    public bool Matches(PciDevice device)
    {
        if (_hexPrefix is not null
            && device.ClassCode.ToString("x6", System.Globalization.CultureInfo.InvariantCulture).StartsWith(_hexPrefix, StringComparison.OrdinalIgnoreCase))
            return true;
        return _pattern.IsMatch(device.ClassName) || _pattern.IsMatch(device.BaseClassName);
    }
}
