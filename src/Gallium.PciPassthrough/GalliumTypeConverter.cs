using System.Collections;
using System.Management.Automation;
using System.Reflection;
using Gallium.Pci;

namespace Gallium.PciPassthrough;

/// <summary>Rehydrates an IOMMU group or a device that crossed a process boundary (Export-Clixml, a job, the server side of
/// remoting) into a live <see cref="IommuGroup"/> / <see cref="PciDevice"/>, with its host identity, so it binds
/// -InputObject / -IommuGroup like a local one (and is checked against this host) instead of being bound by its address
/// text (types.ps1xml: TargetTypeForDeserialization).</summary>
public sealed class GalliumTypeConverter : PSTypeConverter
{
    // Only an object that was one of these (live or deserialized): a string or a CSV row must never become a blank device.
    public override bool CanConvertFrom(object sourceValue, Type destinationType) =>
        sourceValue is PSObject pso && Rehydratable(destinationType)
        && pso.TypeNames.Any(n => n == destinationType.FullName || n == "Deserialized." + destinationType.FullName);

    public override object ConvertFrom(object sourceValue, Type destinationType, IFormatProvider formatProvider, bool ignoreCase) =>
        Rehydrate((PSObject)sourceValue, destinationType)
        ?? throw new PSInvalidCastException($"Cannot rebuild a {destinationType.Name} from this object.");

    public override bool CanConvertTo(object sourceValue, Type destinationType) => false;

    public override object ConvertTo(object sourceValue, Type destinationType, IFormatProvider formatProvider, bool ignoreCase) =>
        throw new NotSupportedException();

    private static bool Rehydratable(Type t) =>
        t == typeof(IommuGroup) || t == typeof(PciDevice) || t == typeof(PciBar) || t == typeof(HostId) || typeof(PassthroughCaveat).IsAssignableFrom(t);

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
        var parameters = ctor.GetParameters();
        var args = parameters.Select(p => Value(source, p.Name!, p.ParameterType)).ToArray();
        // A nullable parameter (HostId.MachineId of a host without one) may stay null; any other missing one means no rebuild.
        var nullability = new NullabilityInfoContext();
        if (args.Where((a, i) => a is null && nullability.Create(parameters[i]).WriteState != NullabilityState.Nullable).Any()) return null;
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
