using System.Runtime.InteropServices;

namespace Gallium.Pci.Bench;

/// <summary>CPU time (user + system) of this process's finished children, from getrusage(RUSAGE_CHILDREN): on a shared,
/// loaded machine a child's CPU time varies far less than its wall-clock time, so the bench reports both.</summary>
public static partial class ChildUsage
{
    private const int RusageChildren = -1;

    /// <summary>struct rusage on 64-bit Linux: ru_utime and ru_stime (struct timeval: two longs each), then 14 longs.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Rusage
    {
        public long UserSeconds, UserMicroseconds, SystemSeconds, SystemMicroseconds;
        public long MaxRss, IxRss, IdRss, IsRss, MinFlt, MajFlt, NSwap, InBlock, OuBlock, MsgSnd, MsgRcv, NSignals, NVcsw, NIvcsw;
    }

    public static double CpuMilliseconds()
    {
        if (getrusage(RusageChildren, out var u) != 0) return double.NaN;
        return (u.UserSeconds + u.SystemSeconds) * 1000.0 + (u.UserMicroseconds + u.SystemMicroseconds) / 1000.0;
    }

    [LibraryImport("libc")]
    private static partial int getrusage(int who, out Rusage usage);
}
