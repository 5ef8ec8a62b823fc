namespace Isolate;

/// <summary>
/// Splits an unshare command line where getopt would: unshare's option string starts with '+', so options
/// end at the first argument that is not an option (or at "--"), and <c>isolate unshare -r id -u</c> passes
/// <c>-u</c> to id. System.CommandLine then parses only the option part; the split also expands bundled
/// short options (<c>-Urpf</c>) and attached values (<c>-R/srv</c>) into one token each.
/// </summary>
internal static class UnshareArguments
{
    /// <summary>Long options whose value is required: "--name value" or "--name=value".</summary>
    private static readonly HashSet<string> s_longWithValue =
    [
        "--map-user", "--map-group", "--map-users", "--map-groups", "--propagation", "--setgroups",
        "--root", "--wd", "--setuid", "--setgid", "--monotonic", "--boottime",
        .. SandboxFlags.Options.Where(o => o.Value).Select(o => o.Key),
    ];

    /// <summary>Short options whose value is required: "-R dir" or "-Rdir".</summary>
    private const string ShortWithValue = "RwSG";

    /// <summary>Namespace options whose optional "=file" persists the namespace (not supported here).</summary>
    private static readonly HashSet<string> s_namespaceLong =
        ["--mount", "--uts", "--ipc", "--net", "--pid", "--user", "--cgroup", "--time"];

    /// <summary>The option tokens, normalised, and the program with its arguments (possibly empty).</summary>
    public static (List<string> Options, string[] Program) Split(IReadOnlyList<string> args)
    {
        var options = new List<string>();
        int i = 0;
        for (; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg == "--")
            {
                i++;
                break;
            }
            if (arg.StartsWith("--", StringComparison.Ordinal))
            {
                int eq = arg.IndexOf('=', StringComparison.Ordinal);
                string name = eq < 0 ? arg : arg[..eq];
                if (eq >= 0 && s_namespaceLong.Contains(name))
                    throw new UnshareUsageException($"{name}=FILE (a persistent namespace) is not supported: the library does not bind-mount namespace files; drop '={arg[(eq + 1)..]}'");
                if (eq < 0 && s_longWithValue.Contains(arg))
                {
                    if (i + 1 >= args.Count)
                        throw new UnshareUsageException($"option '{arg}' requires an argument");
                    options.Add($"{arg}={args[++i]}");
                }
                else
                    options.Add(arg);
                continue;
            }
            if (arg.Length < 2 || arg[0] != '-')
                break; // the program: options end here
            for (int c = 1; c < arg.Length; c++)
            {
                char letter = arg[c];
                if (!ShortWithValue.Contains(letter, StringComparison.Ordinal))
                {
                    options.Add($"-{letter}");
                    continue;
                }
                string value;
                if (c + 1 < arg.Length)
                    value = arg[(c + 1)..];
                else if (i + 1 < args.Count)
                    value = args[++i];
                else
                    throw new UnshareUsageException($"option requires an argument -- '{letter}'");
                options.Add($"-{letter}");
                options.Add(value);
                break;
            }
        }
        return (options, [.. args.Skip(i)]);
    }
}

/// <summary>A command-line mistake: unshare prints it with "Try --help" and exits 1.</summary>
internal sealed class UnshareUsageException(string message) : Exception(message);
