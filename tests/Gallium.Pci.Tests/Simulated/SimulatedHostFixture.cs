using Gallium.Pci.Testing;

namespace Gallium.Pci.Tests.Simulated;

/// <summary>A fresh temp directory per test, removed afterwards.</summary>
public abstract class TempDirectoryTest : IDisposable
{
    private readonly DirectoryInfo _dir = new(SimulatedHosts.CreateTempRoot());

    protected static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);

    /// <summary>An empty directory (not yet created) below the test's temp directory.</summary>
    protected string NewRoot(string name = "host") => Path.Combine(_dir.FullName, name);

    public void Dispose()
    {
        try { _dir.Delete(recursive: true); }
        catch (IOException) { }
        GC.SuppressFinalize(this);
    }

    protected static KernelWriteException WriteFails(SimulatedKernel kernel, string path, string value, int errno)
    {
        var e = Assert.Throws<KernelWriteException>(() => kernel.Write(path, value, Timeout));
        Assert.Equal(Errnos.Name(errno), Errnos.Name(e.Errno));
        return e;
    }
}

/// <summary>Tests over <see cref="SimulatedHosts.Standard(string)"/>.</summary>
public abstract class StandardHostTest : TempDirectoryTest
{
    protected StandardHostTest() => Kernel = SimulatedHosts.Standard(NewRoot());

    protected SimulatedKernel Kernel { get; }

    protected void W(string path, string value) => Kernel.Write(path, value, Timeout);

    protected static string Dev(string bdf, string attribute) => $"bus/pci/devices/{bdf}/{attribute}";
}
