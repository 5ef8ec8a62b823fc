using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation.Cgroups;

/// <summary>
/// Reading and writing cgroup interface files. Formats are those of Documentation/admin-guide/cgroup-v2.rst
/// ("Interface Files": flat keyed "KEY VALUE" lines, nested keyed "KEY SUB=VAL ..." lines, "max" for no
/// limit) and Documentation/admin-guide/cgroup-v1/*.rst. Works on any directory, so tests use a temp dir.
/// </summary>
internal static class CgroupFiles
{
    /// <summary>Writes <paramref name="text"/> in one write(2), as the kernel parses each write whole.</summary>
    /// <returns>0, or the errno.</returns>
    public static unsafe int TryWrite(string path, string text)
    {
        int fd = open_path(path, O_WRONLY | O_TRUNC | O_CLOEXEC, 0);
        if (fd < 0)
            return Marshal.GetLastPInvokeError();
        try
        {
            byte[] bytes = Encoding.UTF8.GetBytes(text);
            fixed (byte* p = bytes)
            {
                nint n = (nint)write(fd, p, bytes.Length);
                return n < 0 ? Marshal.GetLastPInvokeError() : n == bytes.Length ? 0 : EIO;
            }
        }
        finally
        {
            close(fd);
        }
    }

    /// <summary>Writes or throws a <see cref="SandboxSetupException"/> naming the file.</summary>
    public static void Write(string path, string text)
    {
        int errno = TryWrite(path, text);
        if (errno != 0)
            throw Failed($"write '{text.TrimEnd()}' to {path}", errno, path);
    }

    /// <summary>
    /// The whole file, or null when it cannot be read. One open and a few read(2)s into a pooled buffer:
    /// cgroup files are read on every exit, and File.ReadAllText's stream and reader cost kilobytes each.
    /// </summary>
    public static unsafe string? TryRead(string path)
    {
        int fd = open_path(path, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0)
            return null;
        byte[] buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(8192);
        try
        {
            int total = 0;
            while (true)
            {
                if (total == buffer.Length)
                {
                    byte[] larger = System.Buffers.ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, total).CopyTo(larger);
                    System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }
                nint n;
                fixed (byte* p = buffer)
                    n = (nint)read(fd, p + total, buffer.Length - total);
                if (n < 0 && Marshal.GetLastPInvokeError() == EINTR)
                    continue;
                if (n < 0)
                    return null;
                if (n == 0)
                    return Encoding.UTF8.GetString(buffer, 0, total);
                total += (int)n;
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            close(fd);
        }
    }

    /// <summary>A single-value file: a number, or "max" (null).</summary>
    public static long? ReadValue(string path) =>
        TryRead(path)?.Trim() is { Length: > 0 } text && long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) ? v : null;

    /// <summary>Flat keyed file ("KEY VALUE" per line): memory.events, cpu.stat, pids.events, memory.oom_control.</summary>
    public static Dictionary<string, long> ReadFlatKeyed(string path) => ParseFlatKeyed(TryRead(path));

    public static Dictionary<string, long> ParseFlatKeyed(string? text)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string line in (text ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 2 && long.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out long v))
                result[parts[0]] = v;
        }
        return result;
    }

    /// <summary>Sums one key over the devices of a nested keyed file (io.stat: "8:0 rbytes=1 wbytes=2 ...").</summary>
    public static long? SumNestedKeyed(string? text, string key)
    {
        if (text is null)
            return null;
        long sum = 0;
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            foreach (string field in line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1))
            {
                int eq = field.IndexOf('=');
                if (eq > 0 && field.AsSpan(0, eq).SequenceEqual(key) && long.TryParse(field.AsSpan(eq + 1), NumberStyles.Integer, CultureInfo.InvariantCulture, out long v))
                    sum += v;
            }
        }
        return sum;
    }

    /// <summary>Sums one operation over the devices of a v1 blkio file ("8:0 Read 4096" lines, plus "Total N").</summary>
    public static long? SumBlkio(string? text, string op)
    {
        if (text is null)
            return null;
        long sum = 0;
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length == 3 && parts[1] == op && long.TryParse(parts[2], NumberStyles.Integer, CultureInfo.InvariantCulture, out long v))
                sum += v;
        }
        return sum;
    }

    /// <summary>The controllers listed in cgroup.controllers or cgroup.subtree_control (space separated).</summary>
    public static HashSet<string> ReadList(string path) =>
        [.. (TryRead(path) ?? "").Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries)];

    /// <summary>The pids in cgroup.procs.</summary>
    public static int[] ReadProcs(string dir) =>
        (TryRead(Path.Join(dir, "cgroup.procs")) ?? "").Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();

    /// <summary>mkdir; true when it created the directory, false when it existed.</summary>
    public static bool MakeDirectory(string path)
    {
        if (mkdir_path(path, 0x1ed /* 0755 */) == 0)
            return true;
        int errno = Marshal.GetLastPInvokeError();
        if (errno == EEXIST)
            return false;
        throw Failed($"create cgroup {path}", errno, path);
    }

    /// <summary>rmdir, retrying while the kernel still counts exiting tasks (EBUSY).</summary>
    /// <returns>True when gone.</returns>
    public static bool RemoveDirectory(string path, TimeSpan wait)
    {
        long deadline = Environment.TickCount64 + (long)wait.TotalMilliseconds;
        while (true)
        {
            if (rmdir_path(path) == 0)
                return true;
            int errno = Marshal.GetLastPInvokeError();
            if (errno == ENOENT)
                return true;
            if (errno != EBUSY || Environment.TickCount64 > deadline)
                return false;
            Thread.Sleep(5);
        }
    }

    public static bool Writable(string path) => access_path(path, W_OK) == 0;

    public static string Format(long value) => value.ToString(CultureInfo.InvariantCulture);

    public static string FormatLimit(long? value) => value is { } v ? Format(v) : "max";

    public static SandboxSetupException Failed(string what, int errno, string? path, string? hint = null)
    {
        hint ??= errno == EACCES || errno == EPERM || errno == EROFS ? CgroupLayout.DelegationHint
            : errno == EBUSY ? "a cgroup with processes of its own cannot enable controllers for its children (cgroup v2's no-internal-processes rule); choose a parent with CgroupBuilder.Parent(...) that holds no processes"
            : errno == ENOENT ? "the controller or file does not exist here: the controller is not enabled for this cgroup (check cgroup.controllers of the parent) or the kernel lacks it"
            : null;
        return new SandboxSetupException(SetupStep.Cgroup, what, errno, path, hint);
    }
}
