using System.Net.Sockets;
using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Tests.Libvirt;

/// <summary>A wedged libvirtd must not hold a command past Ctrl+C: the real libvirt client against a socket that accepts
/// (the kernel queues the connection) and never answers, as a daemon stuck behind a hung QEMU does.</summary>
public sealed class StoppableLibvirtTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("gallium-wedged-").FullName;
    private readonly Socket _wedged = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);

    public StoppableLibvirtTests()
    {
        _wedged.Bind(new UnixDomainSocketEndPoint(Path.Combine(_dir, "libvirt-sock")));
        _wedged.Listen(64);   // never accepted, never answered
    }

    private string WedgedUri => $"qemu+unix:///system?socket={Path.Combine(_dir, "libvirt-sock")}";

    public void Dispose()
    {
        _wedged.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { /* the abandoned client may still hold it */ }
    }

    [Fact(Timeout = 120_000)]   // a hang guard, not a timing assertion: the broken behaviour blocks forever
    public async Task A_stop_leaves_a_connect_to_a_libvirtd_that_never_answers()
    {
        using var stop = new CancellationTokenSource();
        var connecting = Task.Run(() => StoppableLibvirt.Open(() => LibvirtConnection.Open(WedgedUri, readOnly: true), stop.Token));
        await Task.Delay(500);
        Assert.False(connecting.IsCompleted, "the wedged socket answered: the test proves nothing");

        stop.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => connecting);
    }

    [Fact]
    public void Without_a_stop_the_call_answers_and_its_own_exception_comes_through_unwrapped()
    {
        using var stop = new CancellationTokenSource();
        Assert.Equal(42, StoppableLibvirt.Call(() => 42, stop.Token));
        var e = Assert.Throws<VmNotFoundException>(() => StoppableLibvirt.Call<int>(() => throw new VmNotFoundException("gone", null), stop.Token));
        Assert.Equal("VmNotFound", e.ErrorId);
    }

    [Fact]
    public void A_stop_before_the_call_never_starts_it()
    {
        using var stop = new CancellationTokenSource();
        stop.Cancel();
        bool ran = false;
        Assert.ThrowsAny<OperationCanceledException>(() => StoppableLibvirt.Call(() => ran = true, stop.Token));
        Assert.False(ran);
    }

    [Fact(Timeout = 120_000)]
    public async Task A_result_that_arrives_after_the_caller_left_is_handed_over_once_to_be_closed()
    {
        using var stop = new CancellationTokenSource();
        using var release = new ManualResetEventSlim();
        var late = new List<string>();
        var calling = Task.Run(() => StoppableLibvirt.Call(() => { release.Wait(); return "connection"; }, stop.Token,
            onLateResult: v => { lock (late) late.Add(v); }));
        await Task.Delay(200);
        stop.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => calling);

        release.Set();
        for (int i = 0; i < 600 && late.Count == 0; i++) await Task.Delay(100);
        lock (late) Assert.Equal(["connection"], late);
    }

    [Fact]
    public void After_a_stop_reads_are_refused_but_a_write_still_goes_to_libvirt_whole()
    {
        using var stop = new CancellationTokenSource();
        using var libvirt = StoppableLibvirt.Open(() => LibvirtConnection.Open("test:///default"), stop.Token);
        Assert.Contains(libvirt.ListDomains(), d => d.Name == "test");
        string name = "stoppable-" + Guid.NewGuid().ToString("N")[..8];

        stop.Cancel();

        Assert.ThrowsAny<OperationCanceledException>(() => libvirt.ListDomains());
        var defined = libvirt.DefineDomain($"<domain type='test'><name>{name}</name><memory>8192</memory><os><type>hvm</type></os></domain>");
        Assert.Equal(name, defined.Name);
        libvirt.DestroyDomain("test");   // test:///default is private to this connection: nothing to clean up
    }
}
