using System.Globalization;
using System.Runtime.InteropServices;

namespace Isolate;

/// <summary>User and group names from /etc/passwd and /etc/group (unshare's get_user/get_group).</summary>
internal static class IdLookup
{
    public static uint User(string text) => Lookup(text, "/etc/passwd", "uid");

    public static uint Group(string text) => Lookup(text, "/etc/group", "gid");

    public static string? UserName(uint uid)
    {
        string id = uid.ToString(CultureInfo.InvariantCulture);
        return Entries("/etc/passwd").FirstOrDefault(e => e.Id == id).Name;
    }

    private static uint Lookup(string text, string file, string kind)
    {
        if (uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint id))
            return id;
        foreach ((string name, string value) in Entries(file))
        {
            if (name == text && uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out id))
                return id;
        }
        throw new UnshareUsageException($"failed to parse {kind} '{text}': not a number, and no such name in {file}");
    }

    private static IEnumerable<(string Name, string Id)> Entries(string file) =>
        File.Exists(file)
            ? File.ReadLines(file).Select(l => l.Split(':')).Where(p => p.Length >= 3).Select(p => (p[0], p[2]))
            : [];
}

/// <summary>Signal names as kill(1) and unshare's --kill-child take them: "KILL", "SIGKILL" or "9".</summary>
internal static class Signals
{
    private static readonly string[] s_names =
    [
        "", "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM", "TERM",
        "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS",
    ];

    public static int Parse(string text)
    {
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int number) && number is >= 1 and <= 64)
            return number;
        string name = text.StartsWith("SIG", StringComparison.OrdinalIgnoreCase) ? text[3..] : text;
        int index = Array.FindIndex(s_names, n => n.Length > 0 && n.Equals(name, StringComparison.OrdinalIgnoreCase));
        return index > 0 ? index : throw new UnshareUsageException($"unknown signal: {text}");
    }
}

internal static class Native
{
    [DllImport("libc")]
    public static extern uint geteuid();

    [DllImport("libc")]
    public static extern uint getegid();
}
