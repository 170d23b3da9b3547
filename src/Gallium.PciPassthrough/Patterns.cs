using System.Management.Automation;
using Gallium.Pci;

namespace Gallium.PciPassthrough;

/// <summary>Wildcard parameters compiled once per command: a pattern that does not parse is a non-terminating
/// <c>&lt;Parameter&gt;PatternInvalid</c> error and is left out, instead of PowerShell's RuntimeException from deep inside
/// the filter.</summary>
internal static class Patterns
{
    public const WildcardOptions Options = WildcardOptions.IgnoreCase | WildcardOptions.CultureInvariant;

    /// <summary>The pattern, or null (after <paramref name="invalid"/> heard why) when it does not parse.</summary>
    public static WildcardPattern? Compile(string parameter, string text, Action<PatternInvalidException> invalid,
        WildcardOptions options = Options)
    {
        var pattern = WildcardPattern.Get(text, options);
        try
        {
            _ = pattern.IsMatch("");  // WildcardPattern parses lazily: the first match is where a bad pattern throws
            return pattern;
        }
        catch (WildcardPatternException e)
        {
            invalid(new PatternInvalidException(parameter, text, e.Message));
            return null;
        }
    }
}
