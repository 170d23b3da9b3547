using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Tests.Libvirt;

[Collection(LibvirtdCollection.Name)]
public sealed class LibvirtConnectionTests(LibvirtdFixture fixture)
{
    [Fact]
    public void Open_reports_the_uri_and_libvirt_9_or_later_and_close_releases_the_connection()
    {
        _ = fixture.Libvirt;   // fails with the start-libvirtd.sh hint when the daemon is down
        var connection = LibvirtConnection.Open(fixture.Uri);
        Assert.Equal(fixture.Uri, connection.Uri);
        Assert.True(connection.LibraryVersion >= new Version(9, 0, 0), $"libvirt {connection.LibraryVersion}");
        connection.Dispose();
        // A closed connection can no longer be used (the SafeHandle refuses), and closing twice is harmless.
        Assert.Throws<ObjectDisposedException>(() => connection.ListDomains());
        connection.Dispose();
    }

    [Fact]
    public void Read_only_connection_lists_domains()
    {
        using var vm = TestVm.Define(fixture, "ro");
        using var readOnly = LibvirtConnection.Open(fixture.Uri, readOnly: true);
        Assert.Contains(readOnly.ListDomains(), d => d.Name == vm.Name && d.Xml.Contains("<name>", StringComparison.Ordinal));
    }

    [Fact]
    public void Unreachable_daemon_is_LibvirtConnectionFailed_naming_the_uri()
    {
        const string uri = "qemu:///system?socket=/nonexistent";
        var e = Assert.Throws<LibvirtConnectionFailedException>(() => LibvirtConnection.Open(uri));
        Assert.Equal("LibvirtConnectionFailed", e.ErrorId);
        Assert.Equal(ErrorKind.ConnectionError, e.Kind);
        Assert.Equal(uri, e.Target);
        Assert.Contains(uri, e.Message, StringComparison.Ordinal);
        Assert.Contains("is libvirtd running", e.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("/nonexistent", e.LibvirtMessage, StringComparison.Ordinal);
        Assert.NotEqual(LibvirtErrorCode.Ok, e.Code);
    }

    [Fact]
    public void Unknown_driver_is_LibvirtConnectionFailed()
    {
        var e = Assert.Throws<LibvirtConnectionFailedException>(() => LibvirtConnection.Open("nosuchdriver:///system"));
        Assert.Contains("nosuchdriver:///system", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_library_is_LibvirtNotInstalled_not_DllNotFound()
    {
        var e = Assert.Throws<LibvirtNotInstalledException>(() => LibvirtRuntime.Initialize("libvirt-gallium-absent.so.0"));
        Assert.Equal("LibvirtNotInstalled", e.ErrorId);
        Assert.Equal(ErrorKind.NotInstalled, e.Kind);
        Assert.Contains("libvirt-gallium-absent.so.0", e.Message, StringComparison.Ordinal);
        Assert.Contains("libvirt0", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("qemu+ssh://root@h/system", "test:///default", "qemu+ssh://root@h/system")]
    [InlineData(null, "test:///default", "test:///default")]
    [InlineData("  ", " qemu:///session ", "qemu:///session")]
    [InlineData(null, null, "qemu:///system")]
    [InlineData("", "", "qemu:///system")]
    public void Uri_is_explicit_else_environment_else_system(string? explicitUri, string? environmentUri, string expected) =>
        Assert.Equal(expected, LibvirtUri.Resolve(explicitUri, environmentUri));

    [Fact]
    public void Connector_opens_the_uri_from_LIBVIRT_DEFAULT_URI_when_none_is_given()
    {
        string? saved = Environment.GetEnvironmentVariable(LibvirtUri.EnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(LibvirtUri.EnvironmentVariable, "qemu:///system?socket=/nonexistent-env");
            var e = Assert.Throws<LibvirtConnectionFailedException>(() => new LibvirtConnector().Open(null));
            Assert.Equal("qemu:///system?socket=/nonexistent-env", e.Uri);
        }
        finally
        {
            Environment.SetEnvironmentVariable(LibvirtUri.EnvironmentVariable, saved);
        }
    }
}
