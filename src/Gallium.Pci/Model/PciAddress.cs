using System.Globalization;

namespace Gallium.Pci;

/// <summary>A PCI function address, domain:bus:device.function (REFERENCE §3.1).</summary>
/// <remarks>Parsing is strict: only hex fields and the two separators are accepted, so an address can never
/// smuggle a path component ("..", "/") into a sysfs path built from it.</remarks>
public readonly record struct PciAddress : IComparable<PciAddress>
{
    public PciAddress(uint domain, byte bus, byte device, byte function)
    {
        if (device > 0x1f) throw new ArgumentOutOfRangeException(nameof(device), device, "A PCI device number is 0-0x1f.");
        if (function > 7) throw new ArgumentOutOfRangeException(nameof(function), function, "A PCI function number is 0-7.");
        Domain = domain; Bus = bus; Device = device; Function = function;
    }

    public uint Domain { get; }
    public byte Bus { get; }
    public byte Device { get; }
    public byte Function { get; }

    /// <summary>The same slot, function 0 (the function that carries multifunction='on' in a guest).</summary>
    public PciAddress SlotFunction0 => new(Domain, Bus, Device, 0);

    /// <summary>Kernel spelling <c>%04x:%02x:%02x.%d</c>; domains above 0xffff print with more digits, as the kernel does.</summary>
    public override string ToString() =>
        string.Create(CultureInfo.InvariantCulture, $"{Domain:x4}:{Bus:x2}:{Device:x2}.{Function}");

    /// <summary>libvirt node-device name, e.g. <c>pci_0000_01_00_0</c> (REFERENCE §5.1).</summary>
    public string ToNodeDeviceName() =>
        string.Create(CultureInfo.InvariantCulture, $"pci_{Domain:x4}_{Bus:x2}_{Device:x2}_{Function}");

    public int CompareTo(PciAddress other)
    {
        int c = Domain.CompareTo(other.Domain);
        if (c != 0) return c;
        c = Bus.CompareTo(other.Bus);
        if (c != 0) return c;
        c = Device.CompareTo(other.Device);
        return c != 0 ? c : Function.CompareTo(other.Function);
    }

    public static bool operator <(PciAddress a, PciAddress b) => a.CompareTo(b) < 0;
    public static bool operator >(PciAddress a, PciAddress b) => a.CompareTo(b) > 0;
    public static bool operator <=(PciAddress a, PciAddress b) => a.CompareTo(b) <= 0;
    public static bool operator >=(PciAddress a, PciAddress b) => a.CompareTo(b) >= 0;

    /// <summary>Parses <c>DDDD:BB:DD.F</c> or <c>BB:DD.F</c> (domain 0). Throws <see cref="PciAddressInvalidException"/>.</summary>
    public static PciAddress Parse(string? text) =>
        TryParse(text, out var address) ? address : throw new PciAddressInvalidException(text);

    public static bool TryParse(string? text, out PciAddress address)
    {
        address = default;
        if (string.IsNullOrEmpty(text) || text.Length > 20) return false;
        var s = text.AsSpan();
        int dot = s.LastIndexOf('.');
        if (dot < 0 || dot != s.Length - 2) return false;
        char f = s[^1];
        if (f < '0' || f > '7') return false;
        var head = s[..dot];
        int c2 = head.LastIndexOf(':');
        if (c2 < 0) return false;
        if (!TryHex(head[(c2 + 1)..], 2, out uint dev) || dev > 0x1f) return false;
        var rest = head[..c2];
        int c1 = rest.LastIndexOf(':');
        uint domain = 0;
        ReadOnlySpan<char> busText;
        if (c1 < 0) busText = rest;
        else
        {
            if (!TryHex(rest[..c1], 8, out domain)) return false;
            busText = rest[(c1 + 1)..];
        }
        if (!TryHex(busText, 2, out uint bus)) return false;
        address = new PciAddress(domain, (byte)bus, (byte)dev, (byte)(f - '0'));
        return true;
    }

    private static bool TryHex(ReadOnlySpan<char> s, int maxDigits, out uint value)
    {
        value = 0;
        if (s.Length == 0 || s.Length > maxDigits) return false;
        foreach (char ch in s)
        {
            if (!char.IsAsciiHexDigit(ch)) return false;
        }
        return uint.TryParse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}
