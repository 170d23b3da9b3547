using System.Xml.Linq;
using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Tests.Libvirt;

/// <summary>The tests that talk to a real libvirtd run one at a time: they share the daemon, and the stderr test
/// redirects the process's fd 2.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LibvirtdCollection : ICollectionFixture<LibvirtdFixture>
{
    public const string Name = "libvirtd";
}

/// <summary>One connection to the real libvirtd for the whole collection, and a unique domain-name prefix whose
/// domains are destroyed and undefined at the end even when tests fail.</summary>
public sealed class LibvirtdFixture : IDisposable
{
    /// <summary>Overrides the URI the tests use (default qemu:///system, started by tests/libvirt/start-libvirtd.sh).</summary>
    public const string UriVariable = "GALLIUM_TEST_LIBVIRT_URI";

    private readonly LibvirtConnection? _connection;
    private readonly Exception? _openFailure;

    /// <summary>Overrides the start of every test domain's name (default gtest-), so people sharing one libvirtd can tell
    /// whose domains are whose; a random part always follows.</summary>
    public const string PrefixVariable = "GALLIUM_TEST_VM_PREFIX";

    public LibvirtdFixture()
    {
        Uri = LibvirtUri.Resolve(Environment.GetEnvironmentVariable(UriVariable), null);
        string start = Environment.GetEnvironmentVariable(PrefixVariable) is { Length: > 0 } p ? p : "gtest-";
        Prefix = $"{start}{Guid.NewGuid().ToString("n")[..8]}-";
        try { _connection = LibvirtConnection.Open(Uri); }
        catch (Exception e) { _openFailure = e; }
    }

    public string Uri { get; }
    public string Prefix { get; }

    /// <summary>The shared connection; fails the test (never skips it) when libvirtd cannot be reached.</summary>
    public ILibvirt Libvirt =>
        _connection ?? throw new InvalidOperationException(
            $"libvirtd is not reachable at {Uri}: {_openFailure?.Message} " +
            "Run tests/libvirt/start-libvirtd.sh (as root) before the libvirt tests.", _openFailure);

    /// <summary>A fresh unique domain name under this run's prefix.</summary>
    public string NewName(string what) => $"{Prefix}{what}-{Guid.NewGuid().ToString("n")[..6]}";

    /// <summary>A diskless <c>type='qemu'</c> domain (REFERENCE §1): defines and starts without any disk image.</summary>
    public static string DomainXmlFor(string name, string machine = "q35") =>
        new XElement("domain", new XAttribute("type", "qemu"),
            new XElement("name", name),
            new XElement("memory", new XAttribute("unit", "MiB"), 64),
            new XElement("vcpu", 1),
            new XElement("os", new XElement("type", new XAttribute("arch", "x86_64"), new XAttribute("machine", machine), "hvm")),
            new XElement("devices", new XElement("emulator", "/usr/bin/qemu-system-x86_64"))).ToString();

    /// <summary>Removes one test domain, whatever state it is in; missing is fine.</summary>
    public void Remove(string name)
    {
        if (_connection is null) return;
        LibvirtDomain domain;
        try { domain = _connection.GetDomain(name); }
        catch (VmNotFoundException) { return; }
        if (domain.State is not VmState.ShutOff)
        {
            try { _connection.DestroyDomain(name); } catch (LibvirtException) { }
        }
        if (domain.IsPersistent)
        {
            try { _connection.UndefineDomain(name); } catch (VmNotFoundException) { }
        }
    }

    public void Dispose()
    {
        if (_connection is null) return;
        try
        {
            foreach (var d in _connection.ListDomains().Where(d => d.Name.StartsWith(Prefix, StringComparison.Ordinal)))
                Remove(d.Name);
        }
        finally
        {
            _connection.Dispose();
        }
    }
}

/// <summary>A test domain that is removed when the test ends, passed or failed.</summary>
public sealed class TestVm : IDisposable
{
    private readonly LibvirtdFixture _fixture;

    private TestVm(LibvirtdFixture fixture, LibvirtDomain domain)
    {
        _fixture = fixture;
        Domain = domain;
    }

    public LibvirtDomain Domain { get; }
    public string Name => Domain.Name;

    public static TestVm Define(LibvirtdFixture fixture, string what, string machine = "q35") =>
        DefineNamed(fixture, fixture.NewName(what), machine);

    public static TestVm DefineNamed(LibvirtdFixture fixture, string name, string machine = "q35")
    {
        var libvirt = fixture.Libvirt;
        try { return new TestVm(fixture, libvirt.DefineDomain(LibvirtdFixture.DomainXmlFor(name, machine))); }
        catch { fixture.Remove(name); throw; }
    }

    public static TestVm CreateTransient(LibvirtdFixture fixture, string what)
    {
        var libvirt = fixture.Libvirt;
        string name = fixture.NewName(what);
        try { return new TestVm(fixture, libvirt.CreateTransientDomain(LibvirtdFixture.DomainXmlFor(name), paused: true)); }
        catch { fixture.Remove(name); throw; }
    }

    public void Dispose() => _fixture.Remove(Name);
}
