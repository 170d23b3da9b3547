using System.Runtime.CompilerServices;
using Gallium.Pci.Host;

namespace Gallium.Pci.Tests;

/// <summary>Turns on the WriteGuard for the whole test run: no test may write to this machine's real /sys.</summary>
internal static class TestGuard
{
#pragma warning disable CA2255 // a test assembly is exactly where a module initializer belongs
    [ModuleInitializer]
    internal static void Enable() => Environment.SetEnvironmentVariable(WriteGuard.TestGuardVariable, "1");
#pragma warning restore CA2255
}
