using System.Xml.Linq;
using Gallium.Pci.Libvirt;

namespace Gallium.Pci.Tests.Libvirt;

/// <summary>A listing long enough to take the batch path (states in one call, XML fetched several at a time) still gives
/// every domain once, with its own name, UUID, state, persistence and XML.</summary>
[Collection(LibvirtdCollection.Name)]
public sealed class LibvirtListingTests(LibvirtdFixture fixture)
{
    [Fact]
    public void Listing_many_domains_gives_each_its_own_state_persistence_and_xml()
    {
        var vms = new List<TestVm>();
        try
        {
            for (int i = 0; i < 24; i++) vms.Add(TestVm.Define(fixture, $"many{i}"));
            fixture.Libvirt.StartDomain(vms[3].Name, paused: true);
            vms.Add(TestVm.CreateTransient(fixture, "many-transient"));

            var listed = fixture.Libvirt.ListDomains();

            foreach (var vm in vms)
            {
                var d = Assert.Single(listed, x => x.Name == vm.Name);
                Assert.Equal(vm.Domain.Uuid, d.Uuid);
                var root = XDocument.Parse(d.Xml).Root!;
                Assert.Equal(vm.Name, root.Element("name")!.Value);
                Assert.Equal(d.Uuid, Guid.Parse(root.Element("uuid")!.Value));
                bool transient = vm == vms[^1];
                Assert.Equal(!transient, d.IsPersistent);
                Assert.Equal(transient || vm == vms[3] ? VmState.Paused : VmState.ShutOff, d.State);
                Assert.Equal(transient, root.Attribute("id") is not null);   // live XML only for the transient one
            }
            Assert.Equal(listed.Count, listed.Select(d => d.Uuid).Distinct().Count());
        }
        finally
        {
            foreach (var vm in vms) vm.Dispose();
        }
    }
}
