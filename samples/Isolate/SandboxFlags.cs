using System.Globalization;
using Isolation;
using Isolation.Cgroups;
using Isolation.Security;
using Isolation.Security.Seccomp;

namespace Isolate;

/// <summary>A usage error in one of <see cref="SandboxFlags"/>' options.</summary>
internal sealed class SandboxFlagException(string message) : Exception(message);

/// <summary>
/// isolate's resource-limit and security options, the same on both faces (<c>isolate unshare</c> and
/// <c>isolate bwrap</c>): bubblewrap's <c>--cap-add --cap-drop --seccomp FD --add-seccomp-fd FD
/// --disable-userns --assert-userns-disabled</c>, and our own cgroup, rlimit, timeout, seccomp-profile,
/// Landlock and preset options. Collected in command-line order, applied to the builder at the end.
/// </summary>
internal sealed class SandboxFlags
{
    /// <summary>Every option, and whether it takes a value.</summary>
    public static IReadOnlyDictionary<string, bool> Options { get; } = new Dictionary<string, bool>
    {
        ["--memory-max"] = true,
        ["--memory-swap-max"] = true,
        ["--pids-max"] = true,
        ["--cpu-max"] = true,
        ["--cpu-weight"] = true,
        ["--cpuset"] = true,
        ["--io-max"] = true,
        ["--rlimit"] = true,
        ["--timeout"] = true,
        ["--cgroup-parent"] = true,
        ["--cgroup-best-effort"] = false,
        ["--cap-add"] = true,
        ["--cap-drop"] = true,
        ["--seccomp"] = true,
        ["--add-seccomp-fd"] = true,
        ["--seccomp-profile"] = true,
        ["--disable-userns"] = false,
        ["--assert-userns-disabled"] = false,
        ["--landlock-ro"] = true,
        ["--landlock-rw"] = true,
        ["--no-new-privs"] = false,
        ["--untrusted"] = false,
    };

    /// <summary>Help lines for both faces.</summary>
    public const string Help = """
        Resource limits (isolate's own; cgroup v2, or v1 where the host has only that):
          --memory-max SIZE         memory.max, e.g. 512M            --memory-swap-max SIZE   swap limit
          --pids-max N              pids.max                          --cpu-max CPUS|QUOTA:PERIOD  e.g. 0.5
          --cpu-weight 1..10000     cpu.weight                        --cpuset CPUS[:MEMS]     e.g. 0-1
          --io-max "MAJ:MIN rbps=N wbps=N riops=N wiops=N"            --rlimit NAME=SOFT[:HARD] e.g. nofile=1024
          --timeout DURATION        kill after e.g. 30s, 500ms, 2m   --cgroup-parent PATH, --cgroup-best-effort
        Security (bubblewrap's, and isolate's own):
          --cap-add CAP, --cap-drop CAP|ALL   --seccomp FD, --add-seccomp-fd FD (compiled BPF)
          --seccomp-profile FILE.json (OCI/Docker format)   --no-new-privs
          --disable-userns, --assert-userns-disabled   --landlock-ro PATH, --landlock-rw PATH
          --untrusted               the ForUntrustedCode() preset: no capabilities, no_new_privs, default seccomp,
                                    no nested user namespaces, new session, die with parent, pids/memory limits
        """;

    private readonly List<(string Name, string? Value)> _given = [];

    /// <summary>Whether --untrusted was given.</summary>
    public bool Untrusted => _given.Exists(g => g.Name == "--untrusted");

    /// <summary>Whether any option was given.</summary>
    public bool Any => _given.Count > 0;

    /// <summary>Records <paramref name="option"/> when it is one of ours (reading its value with <paramref name="value"/>).</summary>
    public bool TryTake(string option, Func<string> value)
    {
        if (!Options.TryGetValue(option, out bool takesValue))
            return false;
        _given.Add((option, takesValue ? value() : null));
        return true;
    }

    /// <summary>
    /// Applies the options to <paramref name="b"/>. With <paramref name="fullPreset"/> (the unshare face,
    /// which has no file-system options) --untrusted is the whole <see cref="NamespaceBuilder.ForUntrustedCode"/>
    /// preset; otherwise (the bwrap face, which applied the preset's process restrictions under the file system
    /// its command line builds) it is the preset's limits.
    /// </summary>
    public NamespaceBuilder Apply(NamespaceBuilder b, bool fullPreset)
    {
        if (Untrusted)
        {
            // The bwrap face applied the preset's process restrictions before its file system (BwrapCommand.cs).
            b = fullPreset ? UntrustedCodePreset.Apply(b) : UntrustedCodePreset.ApplyResourceLimits(b);
        }

        // bubblewrap: capabilities are dropped before any --cap-add takes effect.
        foreach ((string name, string? value) in _given.Where(g => g.Name == "--cap-drop"))
            b = b.WithSecurity(s => s.DropCapabilities(value!));
        foreach ((string name, string? value) in _given.Where(g => g.Name == "--cap-add"))
            b = b.WithSecurity(s => s.AddCapabilities(value!));

        bool disableUserns = false, assertUsernsDisabled = false;
        foreach ((string name, string? value) in _given)
        {
            string v = value ?? "";
            b = name switch
            {
                "--memory-max" => b.WithCgroup(c => c.MemoryMax(Size(v, name))),
                "--memory-swap-max" => b.WithCgroup(c => c.MemorySwapMax(Size(v, name))),
                "--pids-max" => b.WithCgroup(c => c.PidsMax(Long(v, name))),
                "--cpu-max" => b.WithCgroup(c => CpuMax(c, v)),
                "--cpu-weight" => b.WithCgroup(c => c.CpuWeight((int)Long(v, name))),
                "--cpuset" => b.WithCgroup(c => Cpuset(c, v)),
                "--io-max" => b.WithCgroup(c => c.IoMax(IoMax(v))),
                "--rlimit" => Rlimit(b, v),
                "--timeout" => b.WithTimeout(Duration(v, name)),
                "--cgroup-parent" => b.WithCgroup(c => c.Parent(v)),
                "--cgroup-best-effort" => b, // applied last: a later limit option would make the limits required again
                "--seccomp" or "--add-seccomp-fd" => b.WithSecurity(s => s.WithSeccompProgram(SeccompProgram.FromBytes(ReadFd(v, name)))),
                "--seccomp-profile" => b.WithSecurity(s => s.WithSeccompProfileJson(File.ReadAllText(v))),
                "--landlock-ro" => b.WithSecurity(s => s.WithLandlock(l => l.AllowRead(Path.GetFullPath(v)))),
                "--landlock-rw" => b.WithSecurity(s => s.WithLandlock(l => l.AllowReadWrite(Path.GetFullPath(v)))),
                "--no-new-privs" => b.WithSecurity(s => s.NoNewPrivileges()),
                _ => b,
            };
            disableUserns |= name == "--disable-userns";
            assertUsernsDisabled |= name == "--assert-userns-disabled";
        }
        if (_given.Exists(g => g.Name == "--cgroup-best-effort"))
            b = b.WithCgroup(c => c.BestEffort());
        if (disableUserns)
            b = b.WithSecurity(s => s.DisableNestedUserNamespaces());
        // With --disable-userns (or --untrusted) the kernel guarantees it. Without, the sandbox can create user
        // namespaces, and bwrap, which tries unshare(CLONE_NEWUSER) in the sandbox after setup, fails with these
        // words and 1; we fail the same before the sandbox starts.
        if (assertUsernsDisabled && !disableUserns && !Untrusted)
            throw new SandboxFlagException("creation of new user namespaces was not disabled as requested");
        return b;
    }

    /// <summary>After the program ended: says on stderr why, when it was not a plain exit or signal, and whether limits were skipped.</summary>
    public static void ReportTermination(ExitStatus status, IsolatedProcess process)
    {
        if (process.CgroupError is { } cgroupError)
            Console.Error.WriteLine($"isolate: limits were not applied: {cgroupError}");
        if (status.Reason is TerminationReason.TimedOut or TerminationReason.OutOfMemory or TerminationReason.PidsLimit or TerminationReason.Killed)
            Console.Error.WriteLine($"isolate: the program {status}");
    }

    private static CgroupBuilder CpuMax(CgroupBuilder c, string v)
    {
        string[] parts = v.Split([':', ' ', '/'], StringSplitOptions.RemoveEmptyEntries);
        if (parts is [var quota, var period])
            return c.CpuMax(Long(quota, "--cpu-max"), Long(period, "--cpu-max"));
        return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double cpus)
            ? c.CpuMax(cpus)
            : throw new SandboxFlagException($"--cpu-max takes CPUS (e.g. 0.5) or QUOTA:PERIOD in microseconds, not '{v}'");
    }

    private static void Cpuset(CgroupBuilder c, string v)
    {
        string[] parts = v.Split(':', 2);
        c.Cpuset(parts[0], parts.Length == 2 ? parts[1] : null);
    }

    private static IoDeviceLimit IoMax(string v)
    {
        string[] words = v.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (words.Length < 2 || words[0].Split(':') is not [var major, var minor])
            throw new SandboxFlagException($"--io-max takes \"MAJ:MIN rbps=N wbps=N riops=N wiops=N\", not '{v}'");
        long? Get(string key) => words.Skip(1).Select(w => w.Split('=', 2)).FirstOrDefault(kv => kv[0] == key) is [_, var value]
            ? value == "max" ? null : Long(value, "--io-max")
            : null;
        return new IoDeviceLimit((int)Long(major, "--io-max"), (int)Long(minor, "--io-max"), Get("rbps"), Get("wbps"), Get("riops"), Get("wiops"));
    }

    private static NamespaceBuilder Rlimit(NamespaceBuilder b, string v)
    {
        if (v.Split('=', 2) is not [var name, var values])
            throw new SandboxFlagException($"--rlimit takes NAME=SOFT[:HARD] such as nofile=1024:4096, not '{v}'");
        RlimitResource resource = name.ToLowerInvariant() switch
        {
            "cpu" => RlimitResource.Cpu,
            "fsize" => RlimitResource.FileSize,
            "data" => RlimitResource.Data,
            "stack" => RlimitResource.Stack,
            "core" => RlimitResource.Core,
            "rss" => RlimitResource.Rss,
            "nproc" => RlimitResource.Nproc,
            "nofile" => RlimitResource.NoFile,
            "memlock" => RlimitResource.MemLock,
            "as" => RlimitResource.AddressSpace,
            "locks" => RlimitResource.Locks,
            "sigpending" => RlimitResource.SigPending,
            "msgqueue" => RlimitResource.MsgQueue,
            "nice" => RlimitResource.Nice,
            "rtprio" => RlimitResource.RtPrio,
            "rttime" => RlimitResource.RtTime,
            _ => throw new SandboxFlagException($"--rlimit: unknown resource '{name}' (as prlimit(1) names them: nofile, nproc, as, core, cpu, ...)"),
        };
        ulong Value(string text) => text == "unlimited" ? Isolation.Rlimit.Unlimited
            : ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ulong n) ? n
            : throw new SandboxFlagException($"--rlimit {name}: '{text}' is not a number or 'unlimited'");
        string[] parts = values.Split(':', 2);
        ulong soft = Value(parts[0]);
        return b.WithRlimit(resource, soft, parts.Length == 2 ? Value(parts[1]) : soft);
    }

    /// <summary>Bytes, with an optional K, M, G or T suffix (powers of 1024).</summary>
    internal static long Size(string text, string option)
    {
        string t = text.Trim().TrimEnd('B', 'b', 'i');
        long multiplier = 1;
        if (t.Length > 0 && "KkMmGgTt".Contains(t[^1], StringComparison.Ordinal))
        {
            multiplier = char.ToUpperInvariant(t[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1L << 40 };
            t = t[..^1];
        }
        return double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double n) && n > 0
            ? checked((long)(n * multiplier))
            : throw new SandboxFlagException($"{option} takes a size such as 536870912, 512M or 1.5G, not '{text}'");
    }

    /// <summary>A duration: 30s, 500ms, 2m, 1h, or plain seconds.</summary>
    internal static TimeSpan Duration(string text, string option)
    {
        (string number, double scale) = text switch
        {
            _ when text.EndsWith("ms", StringComparison.Ordinal) => (text[..^2], 0.001),
            _ when text.EndsWith('s') => (text[..^1], 1),
            _ when text.EndsWith('m') => (text[..^1], 60),
            _ when text.EndsWith('h') => (text[..^1], 3600),
            _ => (text, 1),
        };
        return double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out double n) && n > 0
            ? TimeSpan.FromSeconds(n * scale)
            : throw new SandboxFlagException($"{option} takes a duration such as 30s, 500ms or 2m, not '{text}'");
    }

    private static long Long(string text, string option) =>
        long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long n)
            ? n
            : throw new SandboxFlagException($"{option} takes a number, not '{text}'");

    private static byte[] ReadFd(string text, string option) => ReadAll((int)Long(text, option));

    /// <summary>Reads a descriptor the caller passed (bubblewrap's FD options) to its end, and closes it.</summary>
    internal static byte[] ReadAll(int fd)
    {
        using var stream = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true), FileAccess.Read, 1, isAsync: false);
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return buffer.ToArray();
    }
}
