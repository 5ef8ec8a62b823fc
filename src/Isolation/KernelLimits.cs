using System.Text;
using Isolation.Mounts;

namespace Isolation;

/// <summary>
/// Sizes the kernel (or the runtime's timer) would refuse, checked before any system call: what a spec holds at
/// <see cref="NamespaceBuilder.Build"/>, argv and envp at <see cref="IsolationSpec.Start"/>. Each error names the
/// limit, so a too-long path is an <see cref="ArgumentException"/> rather than ENAMETOOLONG from mount #3 or E2BIG
/// from execve after the clone.
/// </summary>
internal static class KernelLimits
{
    /// <summary>PATH_MAX (linux/limits.h): a path's bytes and its NUL.</summary>
    public const int PATH_MAX = 4096;

    /// <summary>NAME_MAX (linux/limits.h): the bytes of one path component.</summary>
    public const int NAME_MAX = 255;

    /// <summary>MAX_ARG_STRLEN (linux/binfmts.h, 32 pages): one argv or envp string and its NUL.</summary>
    public const int MAX_ARG_STRLEN = 32 * 4096;

    /// <summary>ARG_MAX (linux/limits.h): argv + envp may always take this much, whatever the stack limit.</summary>
    private const long ARG_MAX = 32 * 4096;

    /// <summary>_STK_LIM / 4 * 3 (fs/exec.c, bprm_stack_limits): argv + envp never take more, whatever the stack limit.</summary>
    private const long ArgStackCap = 8L * 1024 * 1024 / 4 * 3;

    /// <summary>The longest due time of <see cref="System.Threading.Timer"/>: 0xFFFFFFFE ms, about 49.7 days.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromMilliseconds(0xFFFFFFFE);

    /// <summary>Build(): the timeout and every path the spec holds (mount sources and targets, the root, the working directory).</summary>
    public static void Validate(BuilderState s)
    {
        if (s.Timeout > MaxTimeout)
            throw new ArgumentException($"A timeout of {s.Timeout} is longer than the longest the timer takes, 0xFFFFFFFE ms (about 49.7 days); kill the sandbox yourself after a longer wait.");
        CheckPath(s.WorkingDirectory, "The working directory");
        CheckPath(s.Root, "The root");
        foreach (MountOperation op in s.Mounts)
        {
            // A target is a path inside the sandbox: '..' there climbs out of the new root as the child creates
            // the target's parents (MakeTarget), onto the host's file system.
            if (op.Target is { } target && target.Split('/').Contains(".."))
                throw new ArgumentException($"'{op.Description}': the target '{target}' contains '..'; give a plain absolute path inside the sandbox.");
            CheckPath(op.Target, $"'{op.Description}': the target");
            if (op.Kind != NativeOpKind.Symlink && op.Contents is null) // a symlink's source is its contents, not a path it opens
                CheckPath(op.Source, $"'{op.Description}': the source");
            CheckPath(op.UpperDir, $"'{op.Description}': the upper directory");
            CheckPath(op.WorkDir, $"'{op.Description}': the work directory");
            foreach (string layer in op.Layers)
                CheckPath(layer, $"'{op.Description}': the lower directory");
        }
    }

    /// <summary>ENAMETOOLONG before the fact: at most PATH_MAX - 1 bytes, each component at most NAME_MAX.</summary>
    public static void CheckPath(string? path, string what)
    {
        if (path is null)
            return;
        int bytes = Encoding.UTF8.GetByteCount(path);
        if (bytes >= PATH_MAX)
            throw new ArgumentException($"{what} is {bytes} bytes long; the kernel takes paths of at most {PATH_MAX - 1} bytes (PATH_MAX {PATH_MAX} with its NUL). Shorten it.");
        foreach (string component in path.Split('/'))
        {
            if (component.Length > NAME_MAX / 3 && Encoding.UTF8.GetByteCount(component) > NAME_MAX)
                throw new ArgumentException($"{what} has a component of {Encoding.UTF8.GetByteCount(component)} bytes ('{component[..16]}...'); the kernel takes at most {NAME_MAX} (NAME_MAX). Shorten it.");
        }
    }

    /// <summary>
    /// Start(), before any clone: execve(2) refuses a string longer than MAX_ARG_STRLEN and, in all, strings and
    /// pointers beyond a quarter of RLIMIT_STACK (at most 6 MiB, at least 128 KiB) with E2BIG
    /// (fs/exec.c: bprm_stack_limits, copy_strings). <paramref name="environmentBytes"/> counts each NUL.
    /// </summary>
    public static void CheckExecStrings(string program, string argv0, ReadOnlySpan<string> arguments, IReadOnlyList<string> environment,
        long environmentBytes, ulong? specStackLimit)
    {
        if (program.Length > NAME_MAX / 3) // shorter paths cannot break either limit: skip the split on every start
            CheckPath(program, "The program path");
        long total = CheckArgString(program, "The program path") + CheckArgString(argv0, "argv[0]") + environmentBytes;
        for (int i = 0; i < arguments.Length; i++)
            total += CheckArgString(arguments[i], $"Argument {i + 1}");
        // The cheap common case: at most ARG_MAX in all always fits.
        if (total + (arguments.Length + 1 + environment.Count) * 8L <= ARG_MAX)
            return;
        foreach (string entry in environment)
            CheckArgString(entry, $"Environment variable {entry[..Math.Max(0, entry.IndexOf('='))]}");
        ulong stackLimit = specStackLimit ?? CurrentStackLimit();
        long limit = Math.Max(Math.Min(ArgStackCap, stackLimit == ulong.MaxValue ? long.MaxValue : (long)(stackLimit / 4)), ARG_MAX);
        long pointers = (arguments.Length + 1 + environment.Count) * (long)IntPtr.Size;
        if (total + pointers > limit)
            throw new ArgumentException(
                $"argv and envp take {total + pointers} bytes ({arguments.Length + 1} arguments, {environment.Count} environment variables, with their pointers); "
                + $"execve(2) would fail with E2BIG above {limit} bytes, a quarter of RLIMIT_STACK ({(stackLimit == ulong.MaxValue ? "unlimited" : stackLimit.ToString(System.Globalization.CultureInfo.InvariantCulture))}) "
                + "capped at 6 MiB. Pass large data through a file or a pipe, or raise the stack limit (WithRlimit(RlimitResource.Stack, ...)).");
    }

    /// <summary>The soft RLIMIT_STACK a spec sets for its program, or null when it inherits this process's.</summary>
    public static ulong? StackLimitOf(System.Collections.Immutable.ImmutableArray<Rlimit> rlimits)
    {
        foreach (Rlimit r in rlimits)
        {
            if (r.Resource == RlimitResource.Stack)
                return r.Soft;
        }
        return null;
    }

    /// <summary>This process's soft RLIMIT_STACK, which the spawn helper and so the sandbox inherit.</summary>
    private static unsafe ulong CurrentStackLimit()
    {
        Interop.Interop.rlimit current;
        return Interop.Interop.prlimit(0, 3 /* RLIMIT_STACK */, null, &current) == 0 ? current.rlim_cur : ulong.MaxValue;
    }

    /// <summary>The string's bytes with its NUL, or an error when that is over MAX_ARG_STRLEN.</summary>
    private static long CheckArgString(string value, string what)
    {
        if (value.Length < MAX_ARG_STRLEN / 3)
            return Encoding.UTF8.GetByteCount(value) + 1;
        int bytes = Encoding.UTF8.GetByteCount(value);
        if (bytes + 1 > MAX_ARG_STRLEN)
            throw new ArgumentException($"{what} is {bytes} bytes long; execve(2) takes at most {MAX_ARG_STRLEN - 1} bytes per string (MAX_ARG_STRLEN {MAX_ARG_STRLEN} with its NUL) and would fail with E2BIG. Pass large data through a file or a pipe.");
        return bytes + 1;
    }
}
