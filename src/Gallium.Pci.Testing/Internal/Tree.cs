using System.Runtime.InteropServices;
using System.Text;

namespace Gallium.Pci.Testing.Internal;

/// <summary>File operations below the simulated host's root directory. Paths are relative to that root
/// (<c>sys/...</c>, <c>proc/...</c>, <c>dev/...</c>); links are always written relative so the tree can be copied.</summary>
internal sealed class Tree(string root)
{
    public string Root { get; } = root;

    public string Full(string rel) => rel.Length == 0 ? Root : Root + "/" + rel;

    public void Dir(string rel) => Directory.CreateDirectory(Full(rel));

    public void Text(string rel, string text) => Bytes(rel, Utf8.GetBytes(text));

    public void Bytes(string rel, byte[] bytes)
    {
        string full = Full(rel);
        try { File.WriteAllBytes(full, bytes); }
        catch (DirectoryNotFoundException)
        {
            // Create parents only when missing: a mkdir per file is what makes building slow on a journaling file system.
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllBytes(full, bytes);
        }
    }

    /// <summary>A relative symbolic link at <paramref name="linkRel"/> pointing at <paramref name="targetRel"/> (both root-relative).</summary>
    public void Link(string linkRel, string targetRel)
    {
        string full = Full(linkRel);
        string dir = Path.GetDirectoryName(full)!;
        string relative = Path.GetRelativePath(dir, Full(targetRel));
        try { File.CreateSymbolicLink(full, relative); }
        catch (IOException) when (!Directory.Exists(dir))
        {
            Directory.CreateDirectory(dir);
            File.CreateSymbolicLink(full, relative);
        }
        catch (IOException) when (IsLinkOrFile(full))
        {
            File.Delete(full);
            File.CreateSymbolicLink(full, relative);
        }
    }

    public void Remove(string rel)
    {
        string full = Full(rel);
        if (IsLinkOrFile(full)) File.Delete(full);
        else if (Directory.Exists(full)) Directory.Delete(full, recursive: true);
    }

    public bool Exists(string rel)
    {
        string full = Full(rel);
        return IsLinkOrFile(full) || Directory.Exists(full);
    }

    public string? Read(string rel)
    {
        try { return File.ReadAllText(Full(rel)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>The last component of a link's target (a driver name, a group number), or null when it is not a link.</summary>
    public string? LinkName(string rel)
    {
        string? target = new FileInfo(Full(rel)).LinkTarget;
        return target is null ? null : Path.GetFileName(target.TrimEnd('/'));
    }

    public IEnumerable<string> Names(string rel)
    {
        string full = Full(rel);
        return Directory.Exists(full) ? Directory.EnumerateFileSystemEntries(full).Select(p => Path.GetFileName(p)) : [];
    }

    private static bool IsLinkOrFile(string full) => File.Exists(full) || new FileInfo(full).LinkTarget is not null;

    private static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false);

    /// <summary>realpath(3): the canonical path with every link resolved; null when it does not exist.</summary>
    public static string? RealPath(string path)
    {
        IntPtr buffer = Marshal.AllocHGlobal(4096);  // PATH_MAX
        try { return realpath(path, buffer) == IntPtr.Zero ? null : Marshal.PtrToStringUTF8(buffer); }
        finally { Marshal.FreeHGlobal(buffer); }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern IntPtr realpath([MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr resolved);
}
