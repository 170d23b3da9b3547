using System.IO.Compression;
using System.Text;

namespace Gallium.Pci.Host;

/// <summary>Names from the system's pci.ids database (vendors, devices, subsystems, and the <c>C</c> class section), looked
/// up the way pciutils' lspci does. The file is parsed once, on the first lookup, into an immutable index; lookups are then
/// thread-safe. A missing or unreadable file gives no names (every lookup returns null), never an error.</summary>
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

    /// <summary>True once the file has been parsed (or found missing); lookups then never wait.</summary>
    public bool IsLoaded => _db.IsValueCreated;

    /// <summary>Parses the file now if that has not happened yet (e.g. on a worker while sysfs is being read).</summary>
    public void Load() => _ = _db.Value;

    /// <summary>How long the one parse took (forces the load); for benchmarks and reports.</summary>
    public TimeSpan LoadTime => _db.Value.LoadTime;

    public int VendorCount => _db.Value.VendorCount;
    public int DeviceCount => _db.Value.DeviceCount;
    public int SubsystemCount => _db.Value.SubsystemCount;

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

    /// <summary>The parsed file: names stay as UTF-8 byte ranges of the file and are decoded on lookup, which keeps the one
    /// parse of ~1.4 MB to a few milliseconds.</summary>
    private sealed class Database
    {
        private readonly byte[] _text;
        private readonly Dictionary<ushort, long> _vendors;
        private readonly Dictionary<uint, long> _devices;
        private readonly Dictionary<ulong, long> _subsystems;
        private readonly Dictionary<uint, long> _genericSubsystems;
        private readonly Dictionary<uint, long> _classes;  // key: level (1 class, 2 subclass, 3 prog-if) << 24 | class code bits

        private Database(byte[] text, int devicesHint)
        {
            _text = text;
            _vendors = new(devicesHint / 12);
            _devices = new(devicesHint);
            _subsystems = new(devicesHint / 2);
            _genericSubsystems = new();
            _classes = new(512);
        }

        public TimeSpan LoadTime { get; private set; }
        public int VendorCount => _vendors.Count;
        public int DeviceCount => _devices.Count;
        public int SubsystemCount => _subsystems.Count;

        public static Database Load(string? path)
        {
            long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
            byte[] text = Read(path);
            var db = new Database(text, Math.Max(16, text.Length / 36));
            db.Parse();
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

        public string? Vendor(ushort v) => Name(_vendors, v);
        public string? Device(ushort v, ushort d) => Name(_devices, (uint)v << 16 | d);
        public string? Subsystem(ushort v, ushort d, ushort sv, ushort sd) => Name(_subsystems, (ulong)v << 48 | (ulong)d << 32 | (ulong)sv << 16 | sd);
        public string? GenericSubsystem(ushort sv, ushort sd) => Name(_genericSubsystems, (uint)sv << 16 | sd);
        public string? Class(byte c) => Name(_classes, 1u << 24 | (uint)c << 16);
        public string? Subclass(byte c, byte s) => Name(_classes, 2u << 24 | (uint)c << 16 | (uint)s << 8);
        public string? ProgIf(byte c, byte s, byte p) => Name(_classes, 3u << 24 | (uint)c << 16 | (uint)s << 8 | p);

        private string? Name<TKey>(Dictionary<TKey, long> map, TKey key) where TKey : notnull =>
            map.TryGetValue(key, out long r) ? Encoding.UTF8.GetString(_text, (int)(r >> 32), (int)r) : null;

        private enum Block { None, Vendor, GenericSubsystem, Class, Unknown }

        /// <summary>The grammar of pciutils lib/names-parse.c: nesting by leading tabs; top level is a vendor (<c>vvvv  name</c>),
        /// a class block (<c>C cc  name</c>), a generic subsystem block (<c>S vvvv</c>) or another letter block, skipped.
        /// Malformed lines are skipped (lspci would reject the whole file); the first of duplicate entries wins.</summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
        private void Parse()  // optimized on first call: tier-0 code would double the one parse a process does
        {
            var all = _text.AsSpan();
            int pos = 0;
            var block = Block.None;
            uint id1 = 0, id2 = 0;
            bool haveLevel1 = false;
            while (pos < all.Length)
            {
                int nl = all[pos..].IndexOf((byte)'\n');
                int lineStart = pos;
                int lineEnd = nl < 0 ? all.Length : pos + nl;
                pos = lineEnd + 1;
                while (lineEnd > lineStart && all[lineEnd - 1] is (byte)' ' or (byte)'\t' or (byte)'\r') lineEnd--;
                int p = lineStart;
                int nest = 0;
                while (p < lineEnd && all[p] == (byte)'\t') { p++; nest++; }
                if (p == lineEnd || all[p] == (byte)'#') continue;
                var line = all[p..lineEnd];
                int offset = p;

                if (nest == 0)
                {
                    haveLevel1 = false;
                    if (line.Length >= 2 && line[1] == (byte)' ' && line[0] >= (byte)'A' && line[0] <= (byte)'Z')
                    {
                        if (line[0] == (byte)'C' && Hex(line, 2, 2, out id1) && IsSpace(line, 4))
                        {
                            block = Block.Class;
                            AddName(_classes, 1u << 24 | id1 << 16, offset, line, 5);
                        }
                        else if (line[0] == (byte)'S' && Hex(line, 2, 4, out id1) && line.Length == 6)
                        {
                            block = Block.GenericSubsystem;
                        }
                        else block = Block.Unknown;
                        continue;
                    }
                    if (Hex(line, 0, 4, out id1) && IsSpace(line, 4))
                    {
                        block = Block.Vendor;
                        AddName(_vendors, (ushort)id1, offset, line, 5);
                    }
                    else block = Block.Unknown;  // a broken top-level line: ignore its children too
                    continue;
                }

                switch (block)
                {
                    case Block.Vendor when nest == 1:
                        haveLevel1 = Hex(line, 0, 4, out id2) && IsSpace(line, 4);
                        if (haveLevel1) AddName(_devices, id1 << 16 | id2, offset, line, 5);
                        break;
                    case Block.Vendor when nest == 2 && haveLevel1:
                        if (Hex(line, 0, 4, out uint sv) && IsSpace(line, 4) && Hex(line, 5, 4, out uint sd) && IsSpace(line, 9))
                            AddName(_subsystems, (ulong)id1 << 48 | (ulong)id2 << 32 | (ulong)sv << 16 | sd, offset, line, 10);
                        break;
                    case Block.GenericSubsystem when nest == 1:
                        if (Hex(line, 0, 4, out uint gd) && IsSpace(line, 4))
                            AddName(_genericSubsystems, id1 << 16 | gd, offset, line, 5);
                        break;
                    case Block.Class when nest == 1:
                        haveLevel1 = Hex(line, 0, 2, out id2) && IsSpace(line, 2);
                        if (haveLevel1) AddName(_classes, 2u << 24 | id1 << 16 | id2 << 8, offset, line, 3);
                        break;
                    case Block.Class when nest == 2 && haveLevel1:
                        if (Hex(line, 0, 2, out uint pi) && IsSpace(line, 2))
                            AddName(_classes, 3u << 24 | id1 << 16 | id2 << 8 | pi, offset, line, 3);
                        break;
                }
            }
        }

        /// <summary>Records the name that follows the ids (after any white space), as a byte range of the file.</summary>
        private static void AddName<TKey>(Dictionary<TKey, long> map, TKey key, int lineOffset, ReadOnlySpan<byte> line, int nameAt)
            where TKey : notnull
        {
            int i = nameAt;
            while (i < line.Length && line[i] is (byte)' ' or (byte)'\t') i++;
            if (i >= line.Length) return;  // an id without a name
            map.TryAdd(key, (long)(lineOffset + i) << 32 | (uint)(line.Length - i));
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
