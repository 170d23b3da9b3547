using System.Collections.Concurrent;
using System.IO.Compression;
using System.Text;

namespace Gallium.Pci.Host;

/// <summary>Names from the system's pci.ids database (vendors, devices, subsystems, and the <c>C</c> class section), looked
/// up the way pciutils' lspci does. The first lookup reads the file and indexes only its top-level lines (one per vendor
/// and class block); a vendor's devices and subsystems are parsed on the first lookup of that vendor, the class and
/// generic-subsystem sections on their first lookup. A host's inventory so parses a few dozen of the ~2,000 vendor blocks
/// instead of all ~40,000 entries. Lookups are thread-safe. A missing or unreadable file gives no names (every lookup
/// returns null), never an error.</summary>
public sealed class PciIds
{
    private readonly Lazy<Database> _db;

    /// <param name="path">pci.ids or pci.ids.gz; null for no database.</param>
    public PciIds(string? path)
    {
        Path = path;
        _db = new Lazy<Database>(() => Database.Load(path), LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>The file this database reads; null when there is none.</summary>
    public string? Path { get; }

    /// <summary>True once loaded when the file gave at least one vendor (forces the load).</summary>
    public bool HasNames => _db.Value.VendorCount > 0;

    /// <summary>True once the file has been read and indexed (or found missing); lookups then never wait for the file.</summary>
    public bool IsLoaded => _db.IsValueCreated;

    /// <summary>Reads and indexes the file now if that has not happened yet (e.g. on a worker while sysfs is being read).</summary>
    public void Load() => _ = _db.Value;

    /// <summary>How long reading and indexing the file took (forces the load); for benchmarks and reports.</summary>
    public TimeSpan LoadTime => _db.Value.LoadTime;

    public int VendorCount => _db.Value.VendorCount;

    /// <summary>Every vendor's devices (parses every vendor block: for tests and reports, not for lookups).</summary>
    public int DeviceCount => _db.Value.DeviceCount();

    /// <summary>Every vendor's subsystems (parses every vendor block).</summary>
    public int SubsystemCount => _db.Value.SubsystemCount();

    /// <summary>How many vendor blocks have been parsed so far (for tests of the lazy parse).</summary>
    internal int ParsedVendorBlocks => _db.IsValueCreated ? _db.Value.ParsedVendorBlocks : 0;

    public string? VendorName(ushort vendor) => _db.Value.Vendor(vendor);

    public string? DeviceName(ushort vendor, ushort device) => _db.Value.Device(vendor, device);

    /// <summary>lspci's subsystem rule: the exact subsystem entry, else a generic <c>S</c>-block entry, else the device's own
    /// name when the subsystem ids equal the device ids.</summary>
    public string? SubsystemName(ushort vendor, ushort device, ushort subsystemVendor, ushort subsystemDevice) =>
        _db.Value.Subsystem(vendor, device, subsystemVendor, subsystemDevice)
        ?? _db.Value.GenericSubsystem(subsystemVendor, subsystemDevice)
        ?? (vendor == subsystemVendor && device == subsystemDevice ? DeviceName(vendor, device) : null);

    public string? BaseClassName(byte baseClass) => _db.Value.Class(baseClass);

    public string? SubclassName(byte baseClass, byte subclass) => _db.Value.Subclass(baseClass, subclass);

    public string? ProgIfName(byte baseClass, byte subclass, byte progIf) => _db.Value.ProgIf(baseClass, subclass, progIf);

    /// <summary>The name lspci gives a 24-bit class code: the subclass name, else the base class name; null when neither is known.</summary>
    public string? ClassName(uint classCode) =>
        SubclassName(SysfsFormat.BaseClass(classCode), SysfsFormat.SubClass(classCode)) ?? BaseClassName(SysfsFormat.BaseClass(classCode));

    /// <summary>The file's bytes and an index of its top-level lines. Names stay UTF-8 byte ranges of the file (packed as
    /// offset &lt;&lt; 32 | length) and are decoded on lookup.</summary>
    private sealed class Database
    {
        private readonly byte[] _text;
        private readonly Dictionary<ushort, VendorEntry> _vendors = [];
        // Child lines of each class block and generic-subsystem block, in file order (first entry of a duplicate wins).
        private readonly List<(uint Class, (int Start, int End) Lines)> _classBlocks = [];
        private readonly List<(uint Vendor, (int Start, int End) Lines)> _genericBlocks = [];
        private readonly Dictionary<uint, long> _classNames = [];
        private readonly ConcurrentDictionary<ushort, VendorBlock> _parsed = new();
        private readonly Lazy<Dictionary<uint, long>> _classes;
        private readonly Lazy<Dictionary<uint, long>> _generic;

        private Database(byte[] text)
        {
            _text = text;
            _classes = new(ParseClasses, LazyThreadSafetyMode.ExecutionAndPublication);
            _generic = new(ParseGenericSubsystems, LazyThreadSafetyMode.ExecutionAndPublication);
        }

        public TimeSpan LoadTime { get; private set; }
        public int VendorCount => _vendors.Count;
        public int ParsedVendorBlocks => _parsed.Count;

        /// <summary>A vendor's name and the child lines of each of its blocks (a vendor listed twice has two).</summary>
        private sealed class VendorEntry(long name)
        {
            public long Name { get; } = name;
            public List<(int Start, int End)> Blocks { get; } = [];
        }

        /// <summary>One vendor's devices and subsystems, parsed from its blocks on its first lookup.</summary>
        private sealed class VendorBlock(Dictionary<ushort, long> devices, Dictionary<ulong, long> subsystems)
        {
            public Dictionary<ushort, long> Devices { get; } = devices;
            public Dictionary<ulong, long> Subsystems { get; } = subsystems;  // device << 32 | subvendor << 16 | subdevice
        }

        public static Database Load(string? path)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            var db = new Database(Read(path));
            db.IndexTopLevel();
            db.LoadTime = System.Diagnostics.Stopwatch.GetElapsedTime(t0);
            return db;
        }

        private static byte[] Read(string? path)
        {
            if (string.IsNullOrEmpty(path)) return [];
            try
            {
                byte[] raw = File.ReadAllBytes(path);
                if (raw.Length < 2 || raw[0] != 0x1f || raw[1] != 0x8b) return raw;  // gzip magic: pci.ids.gz
                using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
                using var output = new MemoryStream(raw.Length * 4);
                gz.CopyTo(output);
                return output.ToArray();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
            {
                return [];
            }
        }

        public string? Vendor(ushort v) => _vendors.TryGetValue(v, out var e) ? Name(e.Name) : null;

        public string? Device(ushort v, ushort d) => BlockOf(v) is { } b && b.Devices.TryGetValue(d, out long r) ? Name(r) : null;

        public string? Subsystem(ushort v, ushort d, ushort sv, ushort sd) =>
            BlockOf(v) is { } b && b.Subsystems.TryGetValue((ulong)d << 32 | (uint)sv << 16 | sd, out long r) ? Name(r) : null;

        public string? GenericSubsystem(ushort sv, ushort sd) => Name(_generic.Value, (uint)sv << 16 | sd);
        public string? Class(byte c) => Name(_classes.Value, 1u << 24 | (uint)c << 16);
        public string? Subclass(byte c, byte s) => Name(_classes.Value, 2u << 24 | (uint)c << 16 | (uint)s << 8);
        public string? ProgIf(byte c, byte s, byte p) => Name(_classes.Value, 3u << 24 | (uint)c << 16 | (uint)s << 8 | p);

        public int DeviceCount() => _vendors.Keys.Sum(v => BlockOf(v)!.Devices.Count);
        public int SubsystemCount() => _vendors.Keys.Sum(v => BlockOf(v)!.Subsystems.Count);

        private VendorBlock? BlockOf(ushort v) =>
            _vendors.TryGetValue(v, out var vendor) ? _parsed.GetOrAdd(v, _ => ParseVendor(vendor)) : null;

        private string Name(long r) => Encoding.UTF8.GetString(_text, (int)(r >> 32), (int)r);

        private string? Name(Dictionary<uint, long> map, uint key) => map.TryGetValue(key, out long r) ? Name(r) : null;

        /// <summary>A line of the file without its end and trailing white space, and its nesting (leading tabs).</summary>
        private readonly ref struct Line(int start, int end, int nest, ReadOnlySpan<byte> content)
        {
            public int Start { get; } = start;     // offset of the content (after the tabs) in the file
            public int End { get; } = end;         // offset just past the line's '\n' (or the file's end)
            public int Nest { get; } = nest;
            public ReadOnlySpan<byte> Content { get; } = content;  // empty for a blank line; a comment starts with '#'
            public bool IsEntry => Content.Length > 0 && Content[0] != (byte)'#';
        }

        private Line LineAt(int pos, int limit)
        {
            var all = _text.AsSpan(0, limit);
            int nl = all[pos..].IndexOf((byte)'\n');
            int end = nl < 0 ? limit : pos + nl;
            int next = nl < 0 ? limit : end + 1;
            while (end > pos && all[end - 1] is (byte)' ' or (byte)'\t' or (byte)'\r') end--;
            int p = pos, nest = 0;
            while (p < end && all[p] == (byte)'\t') { p++; nest++; }
            return new Line(p, next, nest, all[p..end]);
        }

        /// <summary>The grammar of pciutils lib/names-parse.c at the top level: nesting by leading tabs; a top-level entry is a
        /// vendor (<c>vvvv  name</c>), a class block (<c>C cc  name</c>), a generic subsystem block (<c>S vvvv</c>) or
        /// another letter block (skipped, with its children). A block's children are the lines up to the next top-level
        /// entry; comments and blank lines do not end a block. Malformed top-level lines end the block and their children
        /// are ignored (lspci would reject the whole file); the first of duplicate entries wins.</summary>
        private void IndexTopLevel()
        {
            int pos = 0, limit = _text.Length;
            Action<int>? close = null;  // ends the open block at the given offset
            while (pos < limit)
            {
                if (_text[pos] == (byte)'\t')
                {
                    // A child line: it belongs to the open block. Skip to the next line without looking inside.
                    int nl = _text.AsSpan(pos, limit - pos).IndexOf((byte)'\n');
                    pos = nl < 0 ? limit : pos + nl + 1;
                    continue;
                }
                var line = LineAt(pos, limit);
                int lineStart = pos;
                pos = line.End;
                if (!line.IsEntry) continue;
                close?.Invoke(lineStart);
                close = null;
                int childStart = line.End;
                var content = line.Content;
                if (content.Length >= 2 && content[1] == (byte)' ' && content[0] >= (byte)'A' && content[0] <= (byte)'Z')
                {
                    if (content[0] == (byte)'C' && Hex(content, 2, 2, out uint cls) && IsSpace(content, 4))
                    {
                        AddName(_classNames, 1u << 24 | cls << 16, line.Start, content, 5);
                        close = end => _classBlocks.Add((cls, (childStart, end)));
                    }
                    else if (content[0] == (byte)'S' && Hex(content, 2, 4, out uint sv) && content.Length == 6)
                    {
                        close = end => _genericBlocks.Add((sv, (childStart, end)));
                    }
                    continue;
                }
                if (Hex(content, 0, 4, out uint id) && IsSpace(content, 4))
                {
                    ushort v = (ushort)id;
                    if (!_vendors.TryGetValue(v, out var vendor))
                    {
                        int at = NameStart(content, 5);
                        _vendors[v] = vendor = new VendorEntry((long)(line.Start + at) << 32 | (uint)(content.Length - at));
                    }
                    close = end => vendor.Blocks.Add((childStart, end));
                }
            }
            close?.Invoke(limit);
        }

        /// <summary>A vendor block's children: <c>dddd  name</c> devices, and below each, <c>ssss tttt  name</c> subsystems.</summary>
        private VendorBlock ParseVendor(VendorEntry vendor)
        {
            var devices = new Dictionary<ushort, long>();
            var subsystems = new Dictionary<ulong, long>();
            foreach (var block in vendor.Blocks)
            {
                bool haveDevice = false;
                uint device = 0;
                for (int pos = block.Start, end = block.End; pos < end;)
                {
                    var line = LineAt(pos, end);
                    pos = line.End;
                    if (!line.IsEntry) continue;
                    var c = line.Content;
                    if (line.Nest == 1)
                    {
                        haveDevice = Hex(c, 0, 4, out device) && IsSpace(c, 4);
                        if (haveDevice) AddName(devices, (ushort)device, line.Start, c, 5);
                    }
                    else if (line.Nest == 2 && haveDevice && Hex(c, 0, 4, out uint sv) && IsSpace(c, 4) && Hex(c, 5, 4, out uint sd) && IsSpace(c, 9))
                    {
                        AddName(subsystems, (ulong)device << 32 | sv << 16 | sd, line.Start, c, 10);
                    }
                }
            }
            return new VendorBlock(devices, subsystems);
        }

        /// <summary>Every class block's children: <c>ss  name</c> subclasses and, below each, <c>pp  name</c> prog-ifs; keys are
        /// level (1 class, 2 subclass, 3 prog-if) &lt;&lt; 24 | class code bits.</summary>
        private Dictionary<uint, long> ParseClasses()
        {
            var map = new Dictionary<uint, long>(_classNames);
            foreach (var (cls, lines) in _classBlocks)
            {
                bool haveSubclass = false;
                uint sub = 0;
                for (int pos = lines.Start, end = lines.End; pos < end;)
                {
                    var line = LineAt(pos, end);
                    pos = line.End;
                    if (!line.IsEntry) continue;
                    var c = line.Content;
                    if (line.Nest == 1)
                    {
                        haveSubclass = Hex(c, 0, 2, out sub) && IsSpace(c, 2);
                        if (haveSubclass) AddName(map, 2u << 24 | cls << 16 | sub << 8, line.Start, c, 3);
                    }
                    else if (line.Nest == 2 && haveSubclass && Hex(c, 0, 2, out uint pi) && IsSpace(c, 2))
                    {
                        AddName(map, 3u << 24 | cls << 16 | sub << 8 | pi, line.Start, c, 3);
                    }
                }
            }
            return map;
        }

        /// <summary>Every <c>S vvvv</c> block's <c>dddd  name</c> children; key vendor &lt;&lt; 16 | device.</summary>
        private Dictionary<uint, long> ParseGenericSubsystems()
        {
            var map = new Dictionary<uint, long>();
            foreach (var (sv, lines) in _genericBlocks)
            {
                for (int pos = lines.Start, end = lines.End; pos < end;)
                {
                    var line = LineAt(pos, end);
                    pos = line.End;
                    if (line.IsEntry && line.Nest == 1 && Hex(line.Content, 0, 4, out uint sd) && IsSpace(line.Content, 4))
                        AddName(map, sv << 16 | sd, line.Start, line.Content, 5);
                }
            }
            return map;
        }

        /// <summary>Records the name that follows the ids (after any white space), as a byte range of the file.</summary>
        private static void AddName<TKey>(Dictionary<TKey, long> map, TKey key, int lineOffset, ReadOnlySpan<byte> line, int nameAt)
            where TKey : notnull
        {
            int i = NameStart(line, nameAt);
            if (i >= line.Length) return;  // an id without a name
            map.TryAdd(key, (long)(lineOffset + i) << 32 | (uint)(line.Length - i));
        }

        private static int NameStart(ReadOnlySpan<byte> line, int nameAt)
        {
            int i = nameAt;
            while (i < line.Length && line[i] is (byte)' ' or (byte)'\t') i++;
            return i;
        }

        private static bool IsSpace(ReadOnlySpan<byte> line, int at) => at < line.Length && line[at] is (byte)' ' or (byte)'\t';

        private static bool Hex(ReadOnlySpan<byte> line, int at, int digits, out uint value)
        {
            value = 0;
            if (at + digits > line.Length) return false;
            for (int i = at; i < at + digits; i++)
            {
                int c = line[i];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                if (d < 0) return false;
                value = value << 4 | (uint)d;
            }
            return true;
        }
    }
}
