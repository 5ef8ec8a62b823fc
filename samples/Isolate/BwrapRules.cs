using System.Globalization;

namespace Isolate;

/// <summary>
/// bubblewrap 0.11's command-line rules that are not about any one option's meaning: how many arguments each
/// option takes, which options keep only their last value, what <c>--perms</c>, <c>--size</c> and
/// <c>--overlay-src</c> may be followed by, and how <c>--size</c> is read. Messages are bwrap's own words, so that
/// scripts that match them keep working.
/// </summary>
internal static class BwrapRules
{
    private static readonly Dictionary<string, int> Arities = new(StringComparer.Ordinal)
    {
        ["--args"] = 1, ["--argv0"] = 1, ["--chdir"] = 1, ["--remount-ro"] = 1, ["--proc"] = 1, ["--exec-label"] = 1,
        ["--file-label"] = 1, ["--dev"] = 1, ["--tmpfs"] = 1, ["--mqueue"] = 1, ["--dir"] = 1, ["--lock-file"] = 1,
        ["--sync-fd"] = 1, ["--block-fd"] = 1, ["--userns-block-fd"] = 1, ["--info-fd"] = 1, ["--json-status-fd"] = 1,
        ["--seccomp"] = 1, ["--add-seccomp-fd"] = 1, ["--userns"] = 1, ["--userns2"] = 1, ["--pidns"] = 1,
        ["--unsetenv"] = 1, ["--uid"] = 1, ["--gid"] = 1, ["--hostname"] = 1, ["--cap-add"] = 1, ["--cap-drop"] = 1,
        ["--perms"] = 1, ["--size"] = 1, ["--overlay-src"] = 1, ["--tmp-overlay"] = 1, ["--ro-overlay"] = 1,
        ["--bind"] = 2, ["--bind-try"] = 2, ["--ro-bind"] = 2, ["--ro-bind-try"] = 2, ["--dev-bind"] = 2,
        ["--dev-bind-try"] = 2, ["--bind-fd"] = 2, ["--ro-bind-fd"] = 2, ["--file"] = 2, ["--bind-data"] = 2,
        ["--ro-bind-data"] = 2, ["--symlink"] = 2, ["--setenv"] = 2, ["--chmod"] = 2,
        ["--overlay"] = 3,
    };

    /// <summary>Options bwrap warns about when given twice ("Only the last --chdir option will take effect").</summary>
    private static readonly HashSet<string> OnlyLast = new(StringComparer.Ordinal)
    {
        "--chdir", "--exec-label", "--file-label", "--sync-fd", "--block-fd", "--userns-block-fd", "--info-fd",
        "--json-status-fd", "--seccomp", "--userns", "--userns2", "--pidns", "--uid", "--gid", "--hostname",
    };

    /// <summary>The options a pending <c>--perms</c> applies to.</summary>
    private static readonly HashSet<string> TakesPerms = new(StringComparer.Ordinal)
    {
        "--tmpfs", "--dir", "--file", "--bind-data", "--ro-bind-data",
    };

    /// <summary>bwrap's limit on <c>--size</c>: SIZE_MAX / 2.</summary>
    private const ulong MaxTmpfsBytes = ulong.MaxValue / 2;

    /// <summary>How many arguments a bwrap option takes, or null for a flag or an option bwrap does not have.</summary>
    public static int? Arity(string option) => Arities.TryGetValue(option, out int n) ? n : null;

    /// <summary>bwrap's message for an option given too few arguments.</summary>
    public static string TakesArguments(string option, int arity) => option switch
    {
        "--argv0" or "--chdir" or "--remount-ro" => $"{option} takes one argument",
        "--ro-bind-fd" => "--bind-fd takes two arguments", // bwrap's words for both
        _ => $"{option} takes {arity switch { 1 => "an argument", 2 => "two arguments", _ => "three arguments" }}",
    };

    /// <summary>Whether bwrap keeps only the last of several of <paramref name="option"/>, and warns.</summary>
    public static bool OnlyLastTakesEffect(string option) => OnlyLast.Contains(option);

    /// <summary>
    /// bwrap's rules for the modifiers, checked before <paramref name="option"/> is carried out (null: the command
    /// line has ended): a pending <c>--perms</c> must be taken by an option that creates a file, a pending
    /// <c>--size</c> by <c>--tmpfs</c>, and <c>--overlay-src</c> layers by an overlay. bwrap forgets a pending
    /// <c>--perms</c> or <c>--size</c> at the end of its options, and so do we.
    /// </summary>
    public static void CheckModifiers(string? option, bool permsPending, bool sizePending, int overlaySources)
    {
        bool modifier = option is "--perms" or "--size";
        if (option is not null && !modifier && permsPending && !TakesPerms.Contains(option))
            throw new BwrapUsageException("--perms must be followed by an option that creates a file");
        if (option is not null && !modifier && sizePending && option != "--tmpfs")
            throw new BwrapUsageException("--size must be followed by --tmpfs");
        if (overlaySources > 0 && option is not ("--overlay-src" or "--overlay" or "--tmp-overlay" or "--ro-overlay"))
            throw new BwrapUsageException("--overlay-src must be followed by another --overlay-src or one of --overlay, --tmp-overlay, or --ro-overlay");
    }

    /// <summary>
    /// <c>--size BYTES</c> as bwrap reads it: strtoull with base 0 (decimal, 0x hexadecimal, 0 octal), starting
    /// with a digit, non-zero, at most SIZE_MAX / 2.
    /// </summary>
    public static long TmpfsSize(string text)
    {
        const string message = "--size takes a non-zero number of bytes";
        if (text.Length == 0 || !char.IsAsciiDigit(text[0]))
            throw new BwrapUsageException(message);
        (string digits, int radix) = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? (text[2..], 16)
            : text.Length > 1 && text[0] == '0' ? (text[1..], 8)
            : (text, 10);
        ulong value = 0;
        foreach (char c in digits)
        {
            int d = char.IsAsciiDigit(c) ? c - '0' : char.IsAsciiHexDigit(c) ? char.ToLowerInvariant(c) - 'a' + 10 : radix;
            if (d >= radix)
                throw new BwrapUsageException(message);
            if (value > (ulong.MaxValue - (ulong)d) / (ulong)radix)
                throw new BwrapUsageException(message); // ERANGE
            value = value * (ulong)radix + (ulong)d;
        }
        if (digits.Length == 0 && radix == 16 || value == 0)
            throw new BwrapUsageException(message);
        if (value > MaxTmpfsBytes)
            throw new BwrapUsageException(string.Create(CultureInfo.InvariantCulture, $"--size (for tmpfs) is limited to {MaxTmpfsBytes}"));
        return (long)value;
    }
}

/// <summary>A usage error on bwrap's command line: printed as bwrap prints it, and isolate exits with 1.</summary>
internal sealed class BwrapUsageException(string message) : Exception(message);
