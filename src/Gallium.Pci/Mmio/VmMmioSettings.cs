namespace Gallium.Pci.Mmio;

/// <summary>The guest firmware that sizes the 64-bit PCI MMIO window.</summary>
public enum VmFirmware
{
    /// <summary>Legacy BIOS (libvirt's default for x86 without <c>&lt;os firmware='efi'&gt;</c> or a pflash loader).</summary>
    SeaBios,
    /// <summary>UEFI from edk2's OvmfPkg: the firmware this model describes (REFERENCE §6.1).</summary>
    Ovmf,
}

/// <summary>How the guest runs: under KVM the guest CPU inherits host facts (vendor, host-phys-bits); under TCG it does not.</summary>
public enum VmAccelerator
{
    /// <summary><c>&lt;domain type='kvm'&gt;</c>.</summary>
    Kvm,
    /// <summary><c>&lt;domain type='qemu'&gt;</c>: QEMU's TCG emulator.</summary>
    Tcg,
}

/// <summary>libvirt's <c>&lt;cpu mode=…&gt;</c>; <see cref="None"/> when the domain has no <c>&lt;cpu&gt;</c> (QEMU's <c>qemu64</c>).</summary>
public enum VmCpuMode
{
    None,
    HostPassthrough,
    HostModel,
    Maximum,
    Custom,
}

/// <summary>libvirt's <c>&lt;maxphysaddr mode=…&gt;</c> (libvirt ≥ 8.7, REFERENCE §6.3).</summary>
public enum MaxPhysAddrMode
{
    /// <summary>QEMU <c>host-phys-bits=on</c>.</summary>
    Passthrough,
    /// <summary>QEMU <c>phys-bits=N</c>.</summary>
    Emulate,
}

/// <summary>A <c>&lt;maxphysaddr&gt;</c> element; <paramref name="Bits"/> is required for emulate on libvirt 9.0.</summary>
public sealed record MaxPhysAddr(MaxPhysAddrMode Mode, int? Bits = null)
{
    public override string ToString() => Mode == MaxPhysAddrMode.Passthrough
        ? "<maxphysaddr mode='passthrough'/>"
        : $"<maxphysaddr mode='emulate' bits='{Bits}'/>";
}

/// <summary>The parts of a domain definition that decide its 64-bit MMIO window. Read from the domain XML by
/// <see cref="MmioDomainXml.ReadSettings"/>, or built directly by tests.</summary>
public sealed record VmMmioSettings
{
    public string Name { get; init; } = "";
    public VmFirmware Firmware { get; init; } = VmFirmware.Ovmf;
    public VmAccelerator Accelerator { get; init; } = VmAccelerator.Kvm;
    public VmCpuMode CpuMode { get; init; } = VmCpuMode.HostModel;
    /// <summary>The <c>&lt;model&gt;</c> of a custom CPU (e.g. <c>Skylake-Server</c>); null for the other modes.</summary>
    public string? CpuModel { get; init; }
    /// <summary><c>&lt;model vendor_id='…'&gt;</c>: the CPUID vendor string the guest is given, overriding the model's.</summary>
    public string? CpuVendorId { get; init; }
    /// <summary><c>&lt;feature name='pdpe1gb' policy=…&gt;</c>: true for require/force, false for disable/forbid, null when absent.</summary>
    public bool? GigabytePagesFeature { get; init; }
    public MaxPhysAddr? MaxPhysAddr { get; init; }
    /// <summary>The OVMF aperture already forced with <c>-fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=N</c>, in MiB.</summary>
    public ulong? OvmfApertureMiB { get; init; }
    /// <summary><c>&lt;memory&gt;</c> in bytes.</summary>
    public ulong MemoryBytes { get; init; } = 4UL << 30;
    /// <summary><c>&lt;maxMemory&gt;</c> in bytes (memory hot-plug area), 0 when absent.</summary>
    public ulong MaxMemoryBytes { get; init; }
    /// <summary><c>&lt;maxMemory slots='N'&gt;</c>.</summary>
    public int MemorySlots { get; init; }
    /// <summary>Hot-plug capable <c>pcie-root-port</c> controllers in the definition (not <c>&lt;target hotplug='off'/&gt;</c>).</summary>
    public int HotplugRootPorts { get; init; }
}

/// <summary>The CPU the guest firmware sees: address width, vendor and 1 GiB-page support, as QEMU 7.2 derives them
/// from the libvirt CPU definition (REFERENCE §6.1 item 2).</summary>
public sealed record GuestCpu(int PhysicalAddressBits, CpuVendor Vendor, bool HasGigabytePages, string Origin)
{
    /// <summary>QEMU's default <c>phys-bits</c> for named models (<c>TCG_PHYS_ADDR_BITS</c>), REFERENCE §6.1.</summary>
    public const int QemuDefaultPhysBits = 40;

    public static GuestCpu Resolve(VmMmioSettings vm, HostCpu host)
    {
        bool kvm = vm.Accelerator == VmAccelerator.Kvm;
        // -cpu host / max under KVM imply host-phys-bits=on; TCG ignores host-phys-bits (REFERENCE §6.1, §6.3).
        bool hostBitsByMode = kvm && vm.CpuMode is VmCpuMode.HostPassthrough or VmCpuMode.Maximum;
        int bits;
        string origin;
        if (vm.MaxPhysAddr is { Mode: MaxPhysAddrMode.Emulate, Bits: int n })
            (bits, origin) = (n, $"maxphysaddr emulate bits={n}");
        else if (vm.MaxPhysAddr is { Mode: MaxPhysAddrMode.Passthrough } && kvm)
            (bits, origin) = (host.PhysicalAddressBits, "maxphysaddr passthrough (host bits)");
        else if (hostBitsByMode)
            (bits, origin) = (host.PhysicalAddressBits, $"{ModeName(vm.CpuMode)} under KVM (host bits)");
        else
            (bits, origin) = (QemuDefaultPhysBits, $"QEMU default for {ModeName(vm.CpuMode)}{(kvm ? "" : " under TCG")}");

        CpuVendor vendor = vm.CpuVendorId is not null ? HostCpu.VendorFromId(vm.CpuVendorId)
            // KVM reports the host's vendor for every named model; TCG reports the model's own.
            : kvm || vm.CpuMode is VmCpuMode.HostModel or VmCpuMode.HostPassthrough ? host.Vendor
            : vm.CpuMode == VmCpuMode.Maximum ? CpuVendor.Amd   // QEMU's TCG "max" says AuthenticAMD
            : QemuModels.Vendor(vm.CpuModel);

        bool gigabytePages = vm.GigabytePagesFeature
            ?? (vm.CpuMode switch
            {
                VmCpuMode.HostPassthrough or VmCpuMode.HostModel => host.HasGigabytePages,
                VmCpuMode.Maximum => !kvm || host.HasGigabytePages,
                _ => QemuModels.HasGigabytePages(vm.CpuModel),
            });
        return new GuestCpu(bits, vendor, gigabytePages, origin);
    }

    static string ModeName(VmCpuMode mode) => mode switch
    {
        VmCpuMode.None => "the default CPU (qemu64)",
        VmCpuMode.HostPassthrough => "host-passthrough",
        VmCpuMode.HostModel => "host-model",
        VmCpuMode.Maximum => "maximum",
        _ => "a custom CPU model",
    };
}

/// <summary>Facts about QEMU 7.2's named x86 CPU models that the firmware model needs ([Q] target/i386/cpu.c builtin_x86_defs).</summary>
internal static class QemuModels
{
    /// <summary>The vendor a named model reports under TCG (under KVM the host's vendor wins).</summary>
    public static CpuVendor Vendor(string? model)
    {
        string m = model ?? "qemu64";
        return m.StartsWith("EPYC", StringComparison.OrdinalIgnoreCase)
            || m.StartsWith("Opteron", StringComparison.OrdinalIgnoreCase)
            || m is "qemu64" or "phenom" or "athlon"
            ? CpuVendor.Amd
            : m.StartsWith("Dhyana", StringComparison.OrdinalIgnoreCase) ? CpuVendor.Other   // HygonGenuine
            : CpuVendor.Intel;
    }

    /// <summary>Whether a named model has <c>pdpe1gb</c>: the server Xeon and EPYC families and Opteron G4/G5 do; qemu64,
    /// kvm64 and the client Core models do not. Unknown names count as "no", which only makes the plan more careful.</summary>
    public static bool HasGigabytePages(string? model)
    {
        if (model is null) return false;
        string[] withPages =
        [
            "Skylake-Server", "Cascadelake-Server", "Cooperlake", "Icelake-Server", "SapphireRapids", "GraniteRapids",
            "SierraForest", "EPYC", "Opteron_G4", "Opteron_G5", "Dhyana",
        ];
        return withPages.Any(p => model.StartsWith(p, StringComparison.OrdinalIgnoreCase));
    }
}
