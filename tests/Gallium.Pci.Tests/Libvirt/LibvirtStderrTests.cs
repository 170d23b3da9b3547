using System.Runtime.InteropServices;
using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Tests.Libvirt;

/// <summary>libvirt prints failures on the process's stderr (fd 2) unless a handler is installed (REFERENCE §5.5);
/// a cmdlet must not. These tests capture fd 2 itself, since libvirt writes there with fprintf, not through .NET.</summary>
[Collection(LibvirtdCollection.Name)]
public sealed class LibvirtStderrTests(LibvirtdFixture fixture)
{
    [Fact]
    public void Failures_print_nothing_on_stderr()
    {
        using var vm = TestVm.Define(fixture, "stderr");
        var absent = PciAddress.Parse("0000:ee:00.0");
        fixture.Libvirt.AttachDeviceToConfig(vm.Name, DomainXml.BuildHostdev(absent));

        string captured = CaptureStderr(() =>
        {
            Assert.Throws<LibvirtConnectionFailedException>(() => LibvirtConnection.Open("qemu:///system?socket=/nonexistent"));
            Assert.Throws<VmNotFoundException>(() => fixture.Libvirt.GetDomain(fixture.NewName("absent")));
            Assert.Throws<LibvirtOperationFailedException>(() => fixture.Libvirt.AttachDeviceToConfig(vm.Name, DomainXml.BuildHostdev(absent)));
            Assert.Throws<LibvirtOperationFailedException>(() => fixture.Libvirt.DetachDeviceFromConfig(vm.Name, DomainXml.BuildDetach(PciAddress.Parse("0000:ee:1f.7"))));
            Assert.Throws<LibvirtOperationFailedException>(() => fixture.Libvirt.DestroyDomain(vm.Name));
        });

        Assert.Equal("", captured);
    }

    [Fact]
    public void Control_without_the_silent_handler_libvirt_does_print_so_the_capture_would_see_it()
    {
        var libvirt = fixture.Libvirt;   // fails with the start-libvirtd.sh hint when the daemon is down
        string name = fixture.NewName("absent");
        string captured;
        try
        {
            LibvirtRuntime.SetDefaultErrorPrinting(true);
            captured = CaptureStderr(() => Assert.Throws<VmNotFoundException>(() => libvirt.GetDomain(name)));
        }
        finally
        {
            LibvirtRuntime.SetDefaultErrorPrinting(false);
        }
        Assert.Contains("libvirt:", captured, StringComparison.Ordinal);
        Assert.Contains(name, captured, StringComparison.Ordinal);
        Assert.Equal("", CaptureStderr(() => Assert.Throws<VmNotFoundException>(() => libvirt.GetDomain(name))));
    }

    /// <summary>Points fd 2 at a temporary file while <paramref name="action"/> runs and returns what was written.</summary>
    private static string CaptureStderr(Action action)
    {
        string path = Path.GetTempFileName();
        int saved = Libc.dup(2);
        Assert.True(saved >= 0, $"dup(2) failed: errno {Marshal.GetLastPInvokeError()}");
        try
        {
            int fd = Libc.open(path, Libc.O_WRONLY | Libc.O_TRUNC, 0x180);
            Assert.True(fd >= 0, $"open failed: errno {Marshal.GetLastPInvokeError()}");
            Assert.True(Libc.dup2(fd, 2) >= 0);
            Libc.close(fd);
            action();
        }
        finally
        {
            Libc.dup2(saved, 2);
            Libc.close(saved);
        }
        try { return File.ReadAllText(path); }
        finally { File.Delete(path); }
    }

    private static class Libc
    {
        public const int O_WRONLY = 1, O_TRUNC = 0x200;
        [DllImport("libc", SetLastError = true)] public static extern int dup(int fd);
        [DllImport("libc", SetLastError = true)] public static extern int dup2(int fd, int fd2);
        [DllImport("libc", SetLastError = true)] public static extern int close(int fd);
        [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi)] public static extern int open(string path, int flags, int mode);
    }
}
