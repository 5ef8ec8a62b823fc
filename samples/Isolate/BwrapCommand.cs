using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Isolation;
using Isolation.Mounts;
using Isolation.Security;

namespace Isolate;

/// <summary>
/// <c>isolate bwrap [options] [--] program [arguments...]</c>: bubblewrap's command line on top of the
/// Isolation library. Like bwrap, the sandbox's root is an empty tmpfs and every option that touches the file
/// system is one operation, carried out in the order given.
/// </summary>
/// <remarks>
/// Hand-parsed on purpose: bwrap's options are an ordered program (<c>--perms</c> and <c>--size</c> modify
/// the next operation, <c>--overlay-src</c> accumulates layers for the next overlay, <c>--args FD</c>
/// splices more options in place), so a generic parser that collects options into a bag would lose the
/// order that gives them their meaning.
/// </remarks>
internal static class BwrapCommand
{
    private const string Usage = """
        usage: isolate bwrap [options] [--] program [arguments...]
        bubblewrap's options for namespaces, mounts and the process: --bind --ro-bind --dev-bind (and -try),
        --tmpfs --proc --dev --mqueue --dir --symlink --file FD --bind-data FD --ro-bind-data FD --chmod
        --perms --size --remount-ro --overlay-src --overlay --tmp-overlay --ro-overlay --unshare-user[-try]
        --unshare-pid --unshare-net --unshare-uts --unshare-ipc --unshare-cgroup[-try] --unshare-all
        --share-net --uid --gid --hostname --chdir --setenv --unsetenv --clearenv --die-with-parent
        --new-session --as-pid-1 --argv0 --args FD --info-fd --json-status-fd --userns-block-fd --sync-fd
        --lock-file --block-fd --cap-add --cap-drop --seccomp FD --add-seccomp-fd FD --disable-userns
        --assert-userns-disabled. See bwrap(1).

        """ + SandboxFlags.Help;

    public static async Task<int> RunAsync(string[] args)
    {
        Invocation invocation;
        try
        {
            invocation = Parse(args);
        }
        catch (BwrapUsageException e)
        {
            Console.Error.WriteLine($"isolate bwrap: {e.Message}");
            return 1;
        }
        if (invocation.ShowVersion)
        {
            Console.Out.WriteLine("isolate bwrap (bubblewrap's command line on the Isolation library)");
            return 0;
        }
        if (invocation.ShowHelp)
        {
            Console.Out.WriteLine(Usage);
            return 0;
        }
        return await RunAsync(invocation);
    }

    private static async Task<int> RunAsync(Invocation inv)
    {
        IsolationSpec spec;
        try
        {
            spec = inv.Builder.Build();
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"isolate bwrap: {e.Message}");
            return 1;
        }

        // bwrap waits on these before it sets the sandbox up; we wait before starting it.
        foreach (int fd in inv.BlockFds)
            WaitForData(fd);

        // bwrap --die-with-parent: isolate too dies with the process that started it (and the sandbox with isolate).
        if (inv.DieWithParent && !BwrapHostSide.DieWithParent())
            return 1;

        IsolatedProcess process;
        try
        {
            process = spec.Start(inv.Program!, [.. inv.Arguments]);
        }
        catch (SandboxSetupException e)
        {
            Console.Error.WriteLine($"isolate bwrap: {e.Message}");
            return 1;
        }
        await using (process)
        {
            if (inv.InfoFd is int info)
                BwrapHostSide.WriteFd(info, BwrapHostSide.StartedRecord(process.Id, inv.Namespaces, oneLine: false), close: true);
            if (inv.JsonStatusFd is int json)
                BwrapHostSide.WriteFd(json, BwrapHostSide.StartedRecord(process.Id, inv.Namespaces, oneLine: true), close: false);
            ExitStatus status = process.WaitForExit(); // blocking: this thread reads the exit record itself, one hand-off fewer
            SandboxFlags.ReportTermination(status, process);
            if (inv.JsonStatusFd is int jsonEnd)
                BwrapHostSide.WriteFd(jsonEnd, $"{{ \"exit-code\": {status.ShellExitCode} }}\n", close: true);
            if (inv.SyncFd is int sync)
                close(sync);
            return status.ShellExitCode;
        }
    }

    /// <summary>Everything one command line asks for.</summary>
    private sealed class Invocation
    {
        public NamespaceBuilder Builder { get; set; } = new();
        public string? Program { get; set; }
        public List<string> Arguments { get; } = [];
        public bool ShowHelp { get; set; }
        public bool ShowVersion { get; set; }
        public int? InfoFd { get; set; }
        public int? JsonStatusFd { get; set; }
        public int? SyncFd { get; set; }
        public List<int> BlockFds { get; } = [];
        public Namespaces Namespaces { get; set; }
        public bool DieWithParent { get; set; }
    }

    private sealed class BwrapUsageException(string message) : Exception(message);

    private static Invocation Parse(string[] commandLine)
    {
        var inv = new Invocation();
        var ops = new List<Action<MountPlanBuilder>>();
        var binds = new List<(string Source, string Dest)>();
        var bindOps = new Dictionary<int, (string Source, string Dest)>(); // index in ops: for --untrusted's masks
        var procTargets = new List<string>();
        var env = new List<Action<EnvironmentBuilder>>();
        var overlaySources = new List<string>();
        var flags = new SandboxFlags();
        Namespaces ns = Namespaces.Mount;
        bool userTry = false, cgroupTry = false, asPid1 = false, dieWithParent = false, newSession = false, shareNet = false;
        uint? uid = null, gid = null;
        string? hostname = null, chdir = null, argv0 = null;
        int? perms = null;
        long? size = null;

        var queue = new LinkedList<string>(commandLine);
        string Next(string option)
        {
            if (queue.First is null)
                throw new BwrapUsageException($"{option} takes more arguments");
            string value = queue.First.Value;
            queue.RemoveFirst();
            return value;
        }
        int TakePerms(int fallback)
        {
            int value = perms ?? fallback;
            perms = null;
            return value;
        }

        while (queue.First is { } node && inv.Program is null)
        {
            string option = node.Value;
            queue.RemoveFirst();
            if (option == "--")
            {
                inv.Program = queue.First?.Value ?? throw new BwrapUsageException("No program specified");
                queue.RemoveFirst();
                break;
            }
            if (!option.StartsWith("--", StringComparison.Ordinal))
            {
                inv.Program = option;
                break;
            }
            // --perms and --size modify the next operation; both may come before one --tmpfs, in either order.
            if ((perms is not null && option is not ("--tmpfs" or "--dir" or "--file" or "--bind-data" or "--ro-bind-data" or "--chmod" or "--size"))
                || (size is not null && option is not ("--tmpfs" or "--perms")))
                throw new BwrapUsageException($"--perms and --size must come right before the operation they modify, not before {option}");
            switch (option)
            {
                case "--help":
                    inv.ShowHelp = true;
                    return inv;
                case "--version":
                    inv.ShowVersion = true;
                    return inv;
                case "--args":
                {
                    // NUL-separated arguments read from FD, spliced in here (bwrap(1)).
                    string[] more = ReadFd(Fd(Next(option), option)).Split('\0', StringSplitOptions.RemoveEmptyEntries);
                    for (int i = more.Length - 1; i >= 0; i--)
                        queue.AddFirst(more[i]);
                    break;
                }
                case "--unshare-user": ns |= Namespaces.User; break;
                case "--unshare-user-try": userTry = true; break;
                case "--unshare-pid": ns |= Namespaces.Pid; break;
                case "--unshare-net": ns |= Namespaces.Net; break;
                case "--unshare-uts": ns |= Namespaces.Uts; break;
                case "--unshare-ipc": ns |= Namespaces.Ipc; break;
                case "--unshare-cgroup": ns |= Namespaces.Cgroup; break;
                case "--unshare-cgroup-try": cgroupTry = true; break;
                case "--unshare-all":
                    ns |= Namespaces.Pid | Namespaces.Net | Namespaces.Uts | Namespaces.Ipc;
                    userTry = cgroupTry = true;
                    break;
                case "--share-net": ns &= ~Namespaces.Net; shareNet = true; break;
                case "--uid": uid = UInt(Next(option), option); break;
                case "--gid": gid = UInt(Next(option), option); break;
                case "--hostname": hostname = Next(option); break;
                case "--chdir": chdir = Next(option); break;
                case "--setenv": { string name = Next(option), value = Next(option); env.Add(e => e.Set(name, value)); break; }
                case "--unsetenv": { string name = Next(option); env.Add(e => e.Unset(name)); break; }
                case "--clearenv": env.Add(e => e.Clear()); break;
                case "--die-with-parent": dieWithParent = true; break;
                case "--new-session": newSession = true; break;
                case "--as-pid-1": asPid1 = true; break;
                case "--argv0": argv0 = Next(option); break;
                case "--info-fd": inv.InfoFd = Fd(Next(option), option); break;
                case "--json-status-fd": inv.JsonStatusFd = Fd(Next(option), option); break;
                case "--sync-fd": inv.SyncFd = Fd(Next(option), option); break;
                case "--block-fd": inv.BlockFds.Add(Fd(Next(option), option)); break;
                case "--userns-block-fd": inv.BlockFds.Add(Fd(Next(option), option)); break;
                case "--lock-file":
                {
                    // bwrap holds a lock on DEST for the sandbox's lifetime: we take it on the host file it names.
                    string dest = Next(option);
                    LockHostFile(dest, binds);
                    break;
                }
                case "--perms": perms = Octal(Next(option), option); break;
                case "--size":
                    size = long.TryParse(Next(option), NumberStyles.None, CultureInfo.InvariantCulture, out long s) && s > 0
                        ? s : throw new BwrapUsageException("--size takes a positive number of bytes");
                    break;
                case "--bind" or "--bind-try" or "--ro-bind" or "--ro-bind-try" or "--dev-bind" or "--dev-bind-try":
                {
                    string src = Next(option), dest = Next(option);
                    bool optional = option.EndsWith("-try", StringComparison.Ordinal);
                    string source = Absolute(src);
                    binds.Add((source, dest));
                    bindOps[ops.Count] = (source, dest);
                    ops.Add(option.StartsWith("--ro", StringComparison.Ordinal) ? m => m.BindReadOnly(source, dest, optional)
                        : option.StartsWith("--dev", StringComparison.Ordinal) ? m => m.DevBind(source, dest, optional)
                        : m => m.Bind(source, dest, optional: optional));
                    break;
                }
                case "--tmpfs":
                {
                    string dest = Next(option);
                    int mode = TakePerms(0x1ED);
                    long? tmpfsSize = size;
                    size = null;
                    ops.Add(m => m.Tmpfs(dest, tmpfsSize, (UnixFileMode)mode));
                    break;
                }
                case "--proc":
                {
                    // bwrap mounts the proc of the PID namespace the sandbox is in, a new one or not.
                    string dest = Next(option);
                    procTargets.Add(dest);
                    ops.Add(m => m.Proc(dest, callerPidNamespace: !ns.HasFlag(Namespaces.Pid)));
                    break;
                }
                case "--dev": { string dest = Next(option); ops.Add(m => m.Dev(dest)); break; }
                case "--mqueue": { string dest = Next(option); ops.Add(m => m.Mqueue(dest)); break; }
                case "--dir":
                {
                    // bwrap creates missing parents with the --perms mode too (mkdir -p with one mode).
                    string dest = Next(option);
                    bool given = perms is not null;
                    int mode = TakePerms(0x1ED);
                    if (given)
                        foreach (string parent in Parents(dest))
                            ops.Add(m => m.Dir(parent, (UnixFileMode)mode));
                    ops.Add(m => m.Dir(dest, (UnixFileMode)mode));
                    break;
                }
                case "--symlink": { string target = Next(option), dest = Next(option); ops.Add(m => m.Symlink(target, dest)); break; }
                case "--chmod": { int mode = Octal(Next(option), option); string path = Next(option); ops.Add(m => m.Chmod(path, (UnixFileMode)mode)); break; }
                case "--remount-ro": { string dest = Next(option); ops.Add(m => m.RemountReadOnly(dest)); break; }
                case "--file" or "--bind-data" or "--ro-bind-data":
                {
                    int fd = Fd(Next(option), option);
                    string dest = Next(option);
                    // bwrap copies the data at setup; we read it now, before the sandbox exists.
                    byte[] data = SandboxFlags.ReadAll(fd);
                    int mode = TakePerms(option == "--file" ? 0x1B6 /* 0666, as bwrap */ : 0x180 /* 0600 */);
                    ops.Add(option == "--ro-bind-data" ? m => m.File(dest, data, (UnixFileMode)mode).ReadOnlyPaths(dest) : m => m.File(dest, data, (UnixFileMode)mode));
                    break;
                }
                case "--overlay-src": overlaySources.Add(Absolute(Next(option))); break;
                case "--overlay" or "--tmp-overlay" or "--ro-overlay":
                {
                    string? upper = option == "--overlay" ? Absolute(Next(option)) : null;
                    string? work = option == "--overlay" ? Absolute(Next(option)) : null;
                    string dest = Next(option);
                    if (overlaySources.Count == 0)
                        throw new BwrapUsageException($"{option} requires at least one --overlay-src before it");
                    // bwrap lists layers bottom first; overlayfs (and the library) wants the top first.
                    string[] layers = [.. Enumerable.Reverse(overlaySources)];
                    overlaySources.Clear();
                    ops.Add(option switch
                    {
                        "--overlay" => m => m.Overlay(dest, layers, upper!, work!),
                        "--tmp-overlay" => m => m.TmpOverlay(dest, layers),
                        _ => m => m.ReadOnlyOverlay(dest, layers),
                    });
                    break;
                }
                case "--userns" or "--userns2" or "--pidns" or "--level-prefix" or "--exec-label" or "--file-label":
                    throw new BwrapUsageException($"{option} is not supported (isolate cannot join existing namespaces or set SELinux labels)");
                default:
                    // Resource limits and security: the same options as isolate unshare (SandboxFlags.cs).
                    if (!flags.TryTake(option, () => Next(option)))
                        throw new BwrapUsageException($"Unknown option {option}");
                    break;
            }
        }
        if (inv.Program is null)
            throw new BwrapUsageException("No program specified");
        if (overlaySources.Count > 0)
            throw new BwrapUsageException("--overlay-src must be followed by --overlay, --tmp-overlay or --ro-overlay");
        if (perms is not null || size is not null)
            throw new BwrapUsageException("--perms and --size must be followed by the operation they modify");
        while (queue.First is { } rest)
        {
            inv.Arguments.Add(rest.Value);
            queue.RemoveFirst();
        }

        // bwrap unshares the user namespace itself when it is not privileged (not setuid, not root).
        bool root = geteuid() == 0;
        if (userTry || !root)
            ns |= Namespaces.User;
        if (cgroupTry && File.Exists("/proc/self/ns/cgroup"))
            ns |= Namespaces.Cgroup;
        if (hostname is not null && !ns.HasFlag(Namespaces.Uts))
            throw new BwrapUsageException("Specifying --hostname requires --unshare-uts");
        if ((uid is not null || gid is not null) && !ns.HasFlag(Namespaces.User) && !flags.Untrusted)
            throw new BwrapUsageException("Specifying --uid or --gid requires --unshare-user");
        if (asPid1 && !ns.HasFlag(Namespaces.Pid))
            throw new BwrapUsageException("Specifying --as-pid-1 requires --unshare-pid");

        NamespaceBuilder b;
        if (flags.Untrusted)
        {
            // --untrusted is the whole ForUntrustedCode() preset, and the command line's file system inside it.
            if (shareNet)
                throw new BwrapUsageException("--share-net cannot be combined with --untrusted, whose sandbox has a network namespace of its own");
            if (uid is not (null or 0) || gid is not (null or 0))
                throw new BwrapUsageException("--uid and --gid other than 0 cannot be combined with --untrusted, whose program is uid 0 of its own user namespace");
            b = UntrustedCodePreset.ApplyProcessRestrictions(new NamespaceBuilder());
            ns = UntrustedCodePreset.AllNamespaces;
        }
        else
        {
            b = new NamespaceBuilder().WithNamespaces(ns);
            if (ns.HasFlag(Namespaces.User))
            {
                // bwrap maps the sandbox's uid (default: ours) to ours, one id each.
                b = b.MapUsers(uid ?? geteuid(), geteuid(), 1).MapGroups(gid ?? getegid(), getegid(), 1);
            }
        }
        b = b.WithMounts(m =>
        {
            m.EmptyRoot();
            for (int i = 0; i < ops.Count; i++)
            {
                ops[i](m);
                // A documented departure from bwrap: under --untrusted, the caller's runtime directories and
                // daemon sockets are masked even where a bind (of / say) brings them in.
                if (flags.Untrusted && bindOps.TryGetValue(i, out var bind))
                    UntrustedCodePreset.MaskHostRuntimePaths(m, bind.Source, bind.Dest);
            }
            if (flags.Untrusted)
                FreezeKernelKnobs(m, procTargets, bindOps.Values);
        });
        if (hostname is not null)
            b = b.WithHostname(hostname);
        // bwrap starts in the directory it was run from when the sandbox shows it, else in /; and says so in PWD.
        string? cwd = chdir ?? InsideCwd(Environment.CurrentDirectory, binds);
        if (cwd is not null)
            b = b.WithWorkingDirectory(cwd, fallBack: chdir is null); // --chdir must exist; the inherited one may be hidden
        string pwd = cwd ?? "/";
        b = b.WithEnvironment(e =>
        {
            env.ForEach(a => a(e));
            e.Set("PWD", pwd);
        });
        if (dieWithParent)
            b = b.WithDieWithParent();
        inv.Namespaces = ns;
        inv.DieWithParent = dieWithParent;
        if (newSession)
            b = b.WithNewSession();
        // With a PID namespace bwrap stays as PID 1 and reaps; --as-pid-1 makes the program PID 1.
        if (ns.HasFlag(Namespaces.Pid) && !asPid1)
            b = b.WithInit();
        if (argv0 is not null)
            b = b.WithArgv0(argv0);
        b = b.WithSecurity(s => s.NoNewPrivileges()); // bwrap always sets no_new_privs (PR_SET_NO_NEW_PRIVS)
        try
        {
            inv.Builder = flags.Apply(b, fullPreset: false);
        }
        catch (Exception e) when (e is SandboxFlagException or ArgumentException or IOException)
        {
            throw new BwrapUsageException(e.Message);
        }
        return inv;
    }

    /// <summary>
    /// --untrusted: container engines' masked and read-only paths on every proc the command line mounts, and
    /// /proc and /sys read-only wherever a bind brings in the host's.
    /// </summary>
    private static void FreezeKernelKnobs(MountPlanBuilder m, List<string> procTargets, IEnumerable<(string Source, string Dest)> binds)
    {
        foreach (string proc in procTargets)
        {
            string p = proc.TrimEnd('/');
            m.MaskPaths(MountPlanBuilder.DefaultMaskedPaths.Where(x => x.StartsWith("/proc/", StringComparison.Ordinal)).Select(x => p + x[5..]))
                .ReadOnlyPaths(MountPlanBuilder.DefaultReadOnlyPaths.Select(x => p + x[5..]));
        }
        foreach ((string source, string dest) in binds)
        {
            string s = source.TrimEnd('/'), d = dest.TrimEnd('/');
            foreach (string knob in (string[])["/proc", "/sys"])
            {
                if (knob.StartsWith(s + "/", StringComparison.Ordinal))
                    m.ReadOnlyPaths(d + knob[s.Length..]);
            }
        }
    }

    private static string? InsideCwd(string cwd, List<(string Source, string Dest)> binds)
    {
        string? result = null;
        foreach ((string source, string dest) in binds)
        {
            string s = source.TrimEnd('/');
            if (cwd == source || cwd.StartsWith(s + "/", StringComparison.Ordinal))
                result = dest.TrimEnd('/') + cwd[s.Length..] is { Length: > 0 } p ? p : "/";
        }
        return result;
    }

    private static void LockHostFile(string dest, List<(string Source, string Dest)> binds)
    {
        string? host = InsideCwd(dest, binds.Select(b => (b.Dest, b.Source)).ToList());
        if (host is null || !File.Exists(host))
            throw new BwrapUsageException($"--lock-file {dest}: only files bound in from the host can be locked here");
        try
        {
            BwrapHostSide.LockFile(host, dest); // held until isolate exits, as bwrap holds it in the sandbox
        }
        catch (IOException e)
        {
            throw new BwrapUsageException(e.Message);
        }
    }

    /// <summary>"/a/b/c" → "/a", "/a/b" (relative paths are taken from the sandbox's root, as bwrap does).</summary>
    private static IEnumerable<string> Parents(string path)
    {
        string[] parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 1; i < parts.Length; i++)
            yield return "/" + string.Join('/', parts[..i]);
    }

    private static string Absolute(string path) => Path.IsPathRooted(path) ? path : Path.GetFullPath(path);

    private static uint UInt(string text, string option) =>
        uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint v) ? v : throw new BwrapUsageException($"{option} takes a number, not '{text}'");

    private static int Fd(string text, string option) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v : throw new BwrapUsageException($"{option} takes a file descriptor number, not '{text}'");

    private static int Octal(string text, string option)
    {
        try
        {
            int mode = Convert.ToInt32(text, 8);
            return mode is >= 0 and <= 0xFFF ? mode : throw new FormatException();
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
        {
            throw new BwrapUsageException($"{option} takes an octal mode such as 0755, not '{text}'");
        }
    }

    private static string ReadFd(int fd) => Encoding.UTF8.GetString(SandboxFlags.ReadAll(fd));

    private static void WaitForData(int fd)
    {
        var one = new byte[1];
        using var stream = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true), FileAccess.Read, 1, isAsync: false);
        _ = stream.Read(one, 0, 1);
    }

    [DllImport("libc")] private static extern uint geteuid();
    [DllImport("libc")] private static extern uint getegid();
    [DllImport("libc")] private static extern int close(int fd);
}
