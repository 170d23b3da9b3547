using System.Collections;
using System.Management.Automation;
using System.Reflection;
using Gallium.Pci;

namespace Gallium.PciPassthrough;

/// <summary>Rehydrates an IOMMU group that crossed a process boundary (Invoke-Command, Export-Clixml) into a live
/// <see cref="IommuGroup"/>, with its member devices, so it binds -InputObject / -IommuGroup like a local one instead of
/// being coerced to its text (types.ps1xml: TargetTypeForDeserialization).</summary>
public sealed class GalliumTypeConverter : PSTypeConverter
{
    public override bool CanConvertFrom(object sourceValue, Type destinationType) =>
        sourceValue is PSObject && Rehydratable(destinationType);

    public override object ConvertFrom(object sourceValue, Type destinationType, IFormatProvider formatProvider, bool ignoreCase) =>
        Rehydrate((PSObject)sourceValue, destinationType)
        ?? throw new PSInvalidCastException($"Cannot rebuild a {destinationType.Name} from this object.");

    public override bool CanConvertTo(object sourceValue, Type destinationType) => false;

    public override object ConvertTo(object sourceValue, Type destinationType, IFormatProvider formatProvider, bool ignoreCase) =>
        throw new NotSupportedException();

    private static bool Rehydratable(Type t) =>
        t == typeof(IommuGroup) || t == typeof(PciDevice) || t == typeof(PciBar) || typeof(PassthroughCaveat).IsAssignableFrom(t);

    /// <summary>The concrete record a deserialized caveat was (its first type name, without "Deserialized."): the list
    /// holds the abstract base.</summary>
    private static Type? Concrete(PSObject source, Type declared)
    {
        if (!declared.IsAbstract) return declared;
        foreach (string name in source.TypeNames)
        {
            var t = declared.Assembly.GetType(name.StartsWith("Deserialized.", StringComparison.Ordinal) ? name["Deserialized.".Length..] : name);
            if (t is { IsAbstract: false } && declared.IsAssignableFrom(t)) return t;
        }
        return null;
    }

    // Properties are read by name; one that did not survive (serialisation depth) keeps its default.
    private static object? Rehydrate(PSObject source, Type type)
    {
        if (source.BaseObject.GetType() == type) return source.BaseObject;
        var ctor = type.GetConstructors().OrderBy(c => c.GetParameters().Length).First();
        var args = ctor.GetParameters().Select(p => Value(source, p.Name!, p.ParameterType)).ToArray();
        if (args.Any(a => a is null)) return null;
        object target = ctor.Invoke(args);
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (!property.CanWrite || ctor.GetParameters().Any(p => p.Name == property.Name)) continue;
            if (Value(source, property.Name, property.PropertyType) is { } value) property.SetValue(target, value);
        }
        return target;
    }

    private static object? Value(PSObject source, string name, Type type)
    {
        object? raw = source.Properties[name]?.Value;
        if (raw is null) return null;
        try { return Convert(raw, type); }
        catch (Exception e) when (e is FormatException or PSInvalidCastException or ArgumentException or InvalidCastException or GalliumException) { return null; }
    }

    private static object? Convert(object raw, Type type)
    {
        var underlying = Nullable.GetUnderlyingType(type) ?? type;
        object value = raw is PSObject p && p.BaseObject is not PSCustomObject ? p.BaseObject : raw;
        if (underlying == typeof(PciAddress)) return PciAddress.Parse(value.ToString());
        if (underlying.IsEnum) return Enum.Parse(underlying, value.ToString()!, ignoreCase: true);
        if (Rehydratable(underlying))
            return value is PSObject pso ? Concrete(pso, underlying) is { } concrete ? Rehydrate(pso, concrete) : null
                : underlying.IsInstanceOfType(value) ? value : null;
        if (underlying.IsGenericType && underlying.GetGenericTypeDefinition() == typeof(IReadOnlyList<>) && value is IEnumerable items and not string)
        {
            var element = underlying.GetGenericArguments()[0];
            var list = items.Cast<object>().Select(i => Convert(i, element)).ToList();
            if (list.Any(i => i is null)) return null;
            var array = Array.CreateInstance(element, list.Count);
            for (int i = 0; i < list.Count; i++) array.SetValue(list[i], i);
            return array;
        }
        return LanguagePrimitives.ConvertTo(value, underlying);
    }
}
