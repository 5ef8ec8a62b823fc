using System.Reflection;

namespace Isolate;

/// <summary>What the command line asks for: a run, or help, or the version.</summary>
internal enum UnshareAction
{
    Run,
    Help,
    Version,
}

/// <summary>A parsed unshare command line: the options given (by long name, the last value winning) and the program.</summary>
internal sealed class UnshareParse
{
    private readonly Dictionary<string, string?> _values = [];

    public UnshareAction Action { get; set; }

    /// <summary>The program and its arguments (empty: the default shell).</summary>
    public string[] Program { get; set; } = [];

    public bool Has(string option) => _values.ContainsKey(option);

    public string? GetValue(string option) => _values.GetValueOrDefault(option);

    public void Set(string option, string? value) => _values[option] = value;
}

/// <summary>
/// util-linux unshare's command line as glibc getopt_long reads it (option string "+fhVmuinpCTUrR:w:S:G:c"): bundled
/// short options (<c>-Urpf</c>), a required value attached or next (<c>-S0</c>, <c>-S 0</c>, <c>--setuid=0</c>,
/// <c>--setuid 0</c>), an optional value only attached (<c>--mount-proc=/proc</c>), unshare's long names abbreviated
/// to any prefix unique among unshare's own (isolate's options, such as <c>--untrusted</c>, take their full name, so
/// that <c>--pi</c> is <c>--pid</c> as it is to unshare, not ambiguous with <c>--pids-max</c>), and options ending at the first word that is not one or at "--" (so <c>isolate unshare -r id -u</c>
/// passes <c>-u</c> to id). Mistakes are reported in getopt's words.
/// </summary>
internal static class UnshareArguments
{
    private enum Value
    {
        None,
        Required,
        Optional,
    }

    /// <summary>An option; <paramref name="Own"/>: isolate's, not unshare's (matched only by its full name).</summary>
    private sealed record Spec(string Name, char Short, Value Value, bool Own = false);

    /// <summary>util-linux 2.38 unshare's long options in its own order (getopt lists ambiguous candidates in it), then isolate's.</summary>
    private static readonly Spec[] s_options =
    [
        new("--help", 'h', Value.None), new("--version", 'V', Value.None),
        new(UnshareOptions.Mount, 'm', Value.Optional), new(UnshareOptions.Uts, 'u', Value.Optional),
        new(UnshareOptions.Ipc, 'i', Value.Optional), new(UnshareOptions.Net, 'n', Value.Optional),
        new(UnshareOptions.Pid, 'p', Value.Optional), new(UnshareOptions.User, 'U', Value.Optional),
        new(UnshareOptions.Cgroup, 'C', Value.Optional), new(UnshareOptions.Time, 'T', Value.Optional),
        new(UnshareOptions.Fork, 'f', Value.None), new(UnshareOptions.KillChild, '\0', Value.Optional),
        new(UnshareOptions.MountProc, '\0', Value.Optional),
        new(UnshareOptions.MapUser, '\0', Value.Required), new(UnshareOptions.MapUsers, '\0', Value.Required),
        new(UnshareOptions.MapGroup, '\0', Value.Required), new(UnshareOptions.MapGroups, '\0', Value.Required),
        new(UnshareOptions.MapRootUser, 'r', Value.None), new(UnshareOptions.MapCurrentUser, 'c', Value.None),
        new(UnshareOptions.MapAuto, '\0', Value.None),
        new(UnshareOptions.Propagation, '\0', Value.Required), new(UnshareOptions.Setgroups, '\0', Value.Required),
        new(UnshareOptions.KeepCaps, '\0', Value.None),
        new(UnshareOptions.SetUid, 'S', Value.Required), new(UnshareOptions.SetGid, 'G', Value.Required),
        new(UnshareOptions.Root, 'R', Value.Required), new(UnshareOptions.WorkingDirectory, 'w', Value.Required),
        new(UnshareOptions.Monotonic, '\0', Value.Required), new(UnshareOptions.Boottime, '\0', Value.Required),
        new(UnshareOptions.Debug, 'v', Value.None, Own: true),
        .. SandboxFlags.Options.Select(o => new Spec(o.Key, '\0', o.Value ? Value.Required : Value.None, Own: true)),
    ];

    /// <summary>Namespace options, whose optional "=file" would persist the namespace (not supported here).</summary>
    private static readonly string[] s_namespaces =
    [
        UnshareOptions.Mount, UnshareOptions.Uts, UnshareOptions.Ipc, UnshareOptions.Net,
        UnshareOptions.Pid, UnshareOptions.User, UnshareOptions.Cgroup, UnshareOptions.Time,
    ];

    /// <summary>Parses <paramref name="args"/> (after "unshare"), handing isolate's own options to <paramref name="flags"/> in order.</summary>
    /// <exception cref="UnshareUsageException">A getopt error (then "Try --help") or a bad --propagation/--setgroups value.</exception>
    public static UnshareParse Parse(IReadOnlyList<string> args, SandboxFlags flags)
    {
        var parse = new UnshareParse();
        int i = 0;
        for (; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg == "--")
            {
                i++;
                break;
            }
            if (arg.Length < 2 || arg[0] != '-')
                break; // the program: options end here
            if (arg[1] == '-')
            {
                if (Long(arg, args, ref i, parse, flags) is { } action)
                    return Done(parse, action);
                continue;
            }
            for (int c = 1; c < arg.Length; c++)
            {
                char letter = arg[c];
                Spec spec = Array.Find(s_options, s => s.Short == letter)
                    ?? throw new UnshareUsageException($"invalid option -- '{letter}'", tryHelp: true);
                string? value = null;
                if (spec.Value == Value.Required)
                {
                    value = c + 1 < arg.Length ? arg[(c + 1)..]
                        : i + 1 < args.Count ? args[++i]
                        : throw new UnshareUsageException($"option requires an argument -- '{letter}'", tryHelp: true);
                }
                if (Take(spec, value, parse, flags) is { } action)
                    return Done(parse, action);
                if (value is not null)
                    break;
            }
        }
        parse.Program = [.. args.Skip(i)];
        return parse;
    }

    private static UnshareParse Done(UnshareParse parse, UnshareAction action)
    {
        parse.Action = action;
        return parse;
    }

    /// <summary>One long option at <paramref name="i"/> (and its separate value, which moves <paramref name="i"/> on).</summary>
    private static UnshareAction? Long(string arg, IReadOnlyList<string> args, ref int i, UnshareParse parse, SandboxFlags flags)
    {
        int eq = arg.IndexOf('=', StringComparison.Ordinal);
        string name = eq < 0 ? arg : arg[..eq];
        Spec? spec = Array.Find(s_options, s => s.Name == name);
        if (spec is null)
        {
            // getopt_long's abbreviations, among unshare's options only: isolate's need their full name, so an
            // abbreviation means to isolate what it means to unshare.
            Spec[] candidates = Array.FindAll(s_options, s => !s.Own && s.Name.StartsWith(name, StringComparison.Ordinal));
            if (candidates.Length == 0)
                throw new UnshareUsageException($"unrecognized option '{arg}'", tryHelp: true);
            if (candidates.Length > 1)
                throw new UnshareUsageException($"option '{arg}' is ambiguous; possibilities: {string.Join(' ', candidates.Select(s => $"'{s.Name}'"))}", tryHelp: true);
            spec = candidates[0];
        }
        string? value = eq < 0 ? null : arg[(eq + 1)..];
        if (spec.Value == Value.None && value is not null)
            throw new UnshareUsageException($"option '{spec.Name}' doesn't allow an argument", tryHelp: true);
        if (spec.Value == Value.Required && value is null)
            value = i + 1 < args.Count ? args[++i] : throw new UnshareUsageException($"option '{spec.Name}' requires an argument", tryHelp: true);
        if (value is not null && s_namespaces.Contains(spec.Name))
            throw new UnshareUsageException($"{spec.Name}=FILE (a persistent namespace) is not supported: the library does not bind-mount namespace files; drop '={value}'");
        return Take(spec, value, parse, flags);
    }

    /// <summary>Records one option as unshare's getopt loop acts on it: help and version at once, values checked when read.</summary>
    private static UnshareAction? Take(Spec spec, string? value, UnshareParse parse, SandboxFlags flags)
    {
        switch (spec.Name)
        {
            case "--help":
                return UnshareAction.Help;
            case "--version":
                return UnshareAction.Version;
            case UnshareOptions.Propagation when value is not ("slave" or "shared" or "private" or "unchanged"):
                throw new UnshareUsageException($"unsupported propagation mode: {value}");
            case UnshareOptions.Setgroups when value is not ("allow" or "deny"):
                throw new UnshareUsageException($"unsupported --setgroups argument '{value}'");
        }
        if (!flags.TryTake(spec.Name, () => value!))
            parse.Set(spec.Name, value);
        return null;
    }

    /// <summary>The --help text.</summary>
    public static string Help() =>
        "Description:\n" + Indent("""
            Run a program with some namespaces unshared from the parent (util-linux unshare's options).
            Usage: isolate unshare [options] [--] [program [arguments...]]   (default program: $SHELL, else /bin/sh, as a login shell)
            Options end at the first word that is not an option, as with unshare.
            Unlike unshare, the program is always a new child of isolate (with or without -f), so with -p it is PID 1.

            """ + SandboxFlags.Help) + """


            Usage:
              unshare [options]

            Options:
              -m, --mount                                                          unshare mounts namespace
              -u, --uts                                                            unshare UTS namespace (hostname etc)
              -i, --ipc                                                            unshare System V IPC namespace
              -n, --net                                                            unshare network namespace (the library also brings lo up)
              -p, --pid                                                            unshare pid namespace (the program is its PID 1, with or without -f)
              -U, --user                                                           unshare user namespace
              -C, --cgroup                                                         unshare cgroup namespace
              -T, --time                                                           unshare time namespace
              -f, --fork                                                           fork before launching <program> (always a child here; see --help notes)
              --kill-child <signame>                                               when dying, kill the forked child (implies --fork); defaults to SIGKILL
              --mount-proc <dir>                                                   mount proc filesystem first (implies --mount)
              --map-user <uid|name>                                                map current user to uid (implies --user)
              --map-group <gid|name>                                               map current group to gid (implies --user)
              -r, --map-root-user                                                  map current user to root (implies --user)
              -c, --map-current-user                                               map current user to itself (implies --user)
              --map-users <outeruid,inneruid,count|inneruid:outeruid:count|auto>   map count users from outeruid to inneruid (implies --user)
              --map-groups <outergid,innergid,count|innergid:outergid:count|auto>  map count groups from outergid to innergid (implies --user)
              --map-auto                                                           map users and groups automatically (implies --user)
              --propagation <slave|shared|private|unchanged>                       modify mount propagation in mount namespace
              --setgroups <allow|deny>                                             control the setgroups syscall in user namespaces
              --keep-caps                                                          retain capabilities granted in user namespaces (not supported here)
              -R, --root <dir>                                                     run the command with root directory set to <dir> (pivot_root in a new mount namespace)
              -w, --wd <dir>                                                       change working directory to <dir>
              -S, --setuid <uid>                                                   set uid in entered namespace
              -G, --setgid <gid>                                                   set gid in entered namespace
              --monotonic <offset>                                                 set clock monotonic offset (seconds) in time namespaces
              --boottime <offset>                                                  set clock boottime offset (seconds) in time namespaces
              -v, --debug                                                          isolate's own: log each setup step to standard error
              -h, --help                                                           Show help and usage information
              -V, --version                                                        Show version information


            """;

    /// <summary>The --version text: the informational version, as before.</summary>
    public static string Version() =>
        typeof(UnshareArguments).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    private static string Indent(string text) =>
        string.Join('\n', text.TrimEnd('\n').Split('\n').Select(line => line.Length == 0 ? line : "  " + line));
}

/// <summary>A command-line mistake: unshare prints it (getopt's with "Try --help") and exits 1.</summary>
internal sealed class UnshareUsageException(string message, bool tryHelp = false) : Exception(message)
{
    public bool TryHelp { get; } = tryHelp;
}
