using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Gallium.Pci.Host;

namespace Gallium.Pci.Tests.Passthrough;

/// <summary>The umask is process-wide: these tests run alone.</summary>
[CollectionDefinition(nameof(UmaskCollection), DisableParallelization = true)]
public sealed class UmaskCollection;

[Collection(nameof(UmaskCollection))]
[SupportedOSPlatform("linux")]
public sealed class UmaskTests
{
    [Theory]
    [InlineData("077")]
    [InlineData("000")]
    public void Persisted_files_and_directories_get_their_modes_whatever_the_umask(string umaskOctal)
    {
        using var temp = new TempDirectory();
        var store = new PassthroughPersistence(HostPaths.Under(temp.Path));
        var address = PciAddress.Parse("0000:05:00.0");
        int old = umask(Convert.ToInt32(umaskOctal, 8));
        try
        {
            store.WriteFile(store.RecordPath(address), PassthroughPersistence.RecordContent, PassthroughPersistence.FileMode);
            store.WriteFile(store.RulePath(address), store.RuleContent(address), PassthroughPersistence.FileMode);
            store.WriteFile(store.ScriptPath, store.ScriptContent, PassthroughPersistence.ScriptMode);
            using var held = HostLock.Acquire(HostPaths.Under(temp.Path), TimeSpan.FromSeconds(5));
        }
        finally { umask(old); }
        Assert.Equal("644", Mode(store.RecordPath(address)));
        Assert.Equal("644", Mode(store.RulePath(address)));
        Assert.Equal("755", Mode(store.ScriptPath));
        Assert.Equal("755", Mode(store.RecordsDirectory));
        Assert.Equal("755", Mode(store.Paths.UdevRulesDirectory));
        Assert.Equal("700", Mode(HostPaths.Under(temp.Path).LockDirectory));
    }

    [Fact]
    public void A_script_path_udev_would_split_is_refused()
    {
        var store = new PassthroughPersistence(HostPaths.Under("/tmp/with space"));
        Assert.Throws<HostPathUnsafeException>(() => store.RuleContent(PciAddress.Parse("0000:05:00.0")));
    }

    private static string Mode(string path) => Convert.ToString((int)File.GetUnixFileMode(path), 8);

    [DllImport("libc")] private static extern int umask(int mask);
}
