using System.Management.Automation;
using Gallium.Pci;

namespace Gallium.PciPassthrough;

/// <summary>What the user typed for -Address: literal addresses (a missing one is an error) and wildcard patterns
/// (matching nothing is fine, as with Get-Process -Name). Matches the full form and, in domain 0, the short form.</summary>
internal sealed class AddressSelector
{
    private readonly List<(string Text, PciAddress Address)> _literals = [];
    private readonly List<WildcardPattern> _patterns = [];

    private AddressSelector() { }

    public IReadOnlyList<(string Text, PciAddress Address)> Literals => _literals;
    public bool HasPatterns => _patterns.Count > 0;

    /// <summary>Builds the selector; malformed literals and patterns are handed to <paramref name="invalid"/> and left out.</summary>
    public static AddressSelector Create(IEnumerable<string> inputs, Action<GalliumException> invalid)
    {
        var s = new AddressSelector();
        foreach (string raw in inputs)
        {
            string text = raw.Trim();
            if (WildcardPattern.ContainsWildcardCharacters(text))
            {
                if (Patterns.Compile("Address", text, invalid) is { } pattern) s._patterns.Add(pattern);
            }
            else if (PciAddress.TryParse(text, out var address))
                s._literals.Add((text, address));
            else
                invalid(new PciAddressInvalidException(text));
        }
        return s;
    }

    public bool Matches(PciAddress address)
    {
        if (_literals.Any(l => l.Address == address)) return true;
        if (_patterns.Count == 0) return false;
        string full = address.ToString();
        string? shortForm = address.Domain == 0 ? full[5..] : null;
        return _patterns.Any(p => p.IsMatch(full) || (shortForm is not null && p.IsMatch(shortForm)));
    }
}
