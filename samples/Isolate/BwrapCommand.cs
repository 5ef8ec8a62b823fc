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
        usage: {0} [OPTIONS...] [--] COMMAND [ARGS...]
        bubblewrap's options for namespaces, mounts and the process: --bind --ro-bind --dev-bind (and -try),
        --bind-fd FD --ro-bind-fd FD --tmpfs --proc --dev --mqueue --dir --symlink --file FD --bind-data FD
        --ro-bind-data FD --chmod --perms --size --remount-ro --overlay-src --overlay --tmp-overlay --ro-overlay
        --unshare-user[-try] --unshare-pid --unshare-net --unshare-uts --unshare-ipc --unshare-cgroup[-try] --unshare-all
        --share-net --uid --gid --hostname --chdir --setenv --unsetenv --clearenv --die-with-parent
        --new-session --as-pid-1 --argv0 --args FD --info-fd --json-status-fd --userns-block-fd --sync-fd
        --lock-file --block-fd --cap-add --cap-drop --seccomp FD --add-seccomp-fd FD --disable-userns
        --assert-userns-disabled --level-prefix. See bwrap(1).
            --userns FD                  Use this user namespace (cannot combine with --unshare-user)
            --userns2 FD                 After setup switch to this user namespace, only useful with --userns
            --pidns FD                   Use this pid namespace (as parent namespace if using --unshare-pid)

        """ + SandboxFlags.Help;

    /// <summary>
    /// The name isolate was invoked by when that is <c>bwrap</c> (a symlink to isolate: bubblewrap's drop-in), else null.
    /// </summary>
    public static string? InvokedAs()
    {
        string? argv0 = DiagnosticsOff.ProgramName();
        return Path.GetFileName(argv0) == "bwrap" ? argv0 : null;
    }

    /// <summary>Runs the command line; <paramref name="name"/> is how the usage line names the command, as bwrap's names argv[0].</summary>
    public static async Task<int> RunAsync(string[] args, string name = "isolate bwrap")
    {
        if (args.Length == 0)
        {
            Console.Error.WriteLine(Usage.Replace("{0}", name, StringComparison.Ordinal));
            return 1; // bwrap: usage (EXIT_FAILURE, stderr)
        }
        Invocation invocation;
        try
        {
            invocation = Parse(args);
        }
        catch (BwrapUsageException e)
        {
            BwrapMessages.Error(e.Message);
            return 1;
        }
        if (invocation.ShowVersion)
        {
            Console.Out.WriteLine("isolate bwrap (bubblewrap's command line on the Isolation library)");
            return 0;
        }
        if (invocation.ShowHelp)
        {
            Console.Out.WriteLine(Usage.Replace("{0}", name, StringComparison.Ordinal));
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
            BwrapMessages.Error(e.Message);
            return 1;
        }

        // bwrap waits on these before it sets the sandbox up; we wait before starting it. Each keeps only its
        // last FD, as bwrap's does: an earlier --block-fd is never read.
        foreach (int? fd in (int?[])[inv.UsernsBlockFd, inv.BlockFd])
        {
            if (fd is int blockFd)
                WaitForData(blockFd);
        }

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
            string message = BwrapMessages.SetupFailed(e, inv.Namespaces.HasFlag(Namespaces.User), inv.MountCalls, path => InsideCwd(path, inv.Binds.ConvertAll(b => (b.Dest, b.Source))));
            BwrapMessages.Error(inv.RunsSelf ? BwrapSelf.Explain(message, inv.Program!) : message);
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
        public int? BlockFd { get; set; }
        public int? UsernsBlockFd { get; set; }
        public Namespaces Namespaces { get; set; }
        public bool DieWithParent { get; set; }
        public List<(string Source, string Dest)> Binds { get; set; } = [];
        public bool RunsSelf { get; set; } // the program /proc/self/exe: isolate itself (BwrapSelf.cs)
        public BwrapMountCalls MountCalls { get; } = new();
    }


    private static Invocation Parse(string[] commandLine)
    {
        var inv = new Invocation();
        var ops = new List<Action<MountPlanBuilder>>(); // each notes its builder calls in calls (for setup failures' words)
        BwrapMountCalls calls = inv.MountCalls;
        var binds = new List<(string Source, string Dest)>();
        var bindOps = new Dictionary<int, (string Source, string Dest)>(); // index in ops: for --untrusted's masks
        var procTargets = new List<string>();
        var env = new List<Action<EnvironmentBuilder>>();
        var overlaySources = new List<string>();
        var flags = new SandboxFlags();
        Namespaces ns = Namespaces.Mount;
        bool userTry = false, cgroupTry = false, asPid1 = false, dieWithParent = false, newSession = false, shareNet = false, lockFile = false;
        uint? uid = null, gid = null;
        string? hostname = null, chdir = null, argv0 = null;
        int? perms = null;
        long? size = null;
        var joinFds = new Dictionary<string, int>(); // --userns, --userns2, --pidns (BwrapJoins.cs)

        var queue = new LinkedList<string>(commandLine);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        string Next(string option)
        {
            if (queue.First is null)
                throw new BwrapUsageException($"{option} takes an argument");
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
        // bwrap creates the missing parents of what it creates with 0755, less the group's or others' bits when
        // the thing itself gives them nothing (least privilege): 0750 for a 0640 file, 0700 for 0600.
        void Parents(string dest, int mode)
        {
            int parentMode = 0x1ED & ((mode & 0x38) == 0 ? ~0x28 : ~0) & ((mode & 0x7) == 0 ? ~0x5 : ~0);
            if (parentMode != 0x1ED)
                foreach (string parent in ParentsOf(dest))
                    ops.Add(m => calls.Note(m, BwrapMountKind.Dir, parent).Dir(parent, (UnixFileMode)parentMode));
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
            // bwrap's rules and wording: a missing argument, an option that keeps only its last value, and what
            // --perms, --size and --overlay-src may be followed by.
            if (BwrapRules.Arity(option) is int arity and > 0 && queue.Count < arity)
                throw new BwrapUsageException(BwrapRules.TakesArguments(option, arity));
            if (BwrapRules.OnlyLastTakesEffect(option) && !seen.Add(option))
                BwrapMessages.Warning($"Only the last {option} option will take effect");
            BwrapRules.CheckModifiers(option, perms is not null, size is not null, overlaySources.Count);
            if (option == "--level-prefix")
            {
                BwrapMessages.LevelPrefix = true;
                continue;
            }
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
                case "--argv0": argv0 = argv0 is null ? Next(option) : throw new BwrapUsageException("--argv0 used multiple times"); break;
                case "--info-fd": inv.InfoFd = Fd(Next(option), option); break;
                case "--json-status-fd": inv.JsonStatusFd = Fd(Next(option), option); break;
                case "--sync-fd": inv.SyncFd = Fd(Next(option), option); break;
                case "--block-fd": inv.BlockFd = Fd(Next(option), option); break;
                case "--userns-block-fd": inv.UsernsBlockFd = Fd(Next(option), option); break;
                case "--lock-file":
                {
                    // bwrap holds a lock on DEST for the sandbox's lifetime: we take it on the host file it names.
                    string dest = Next(option);
                    LockHostFile(dest, binds);
                    lockFile = true;
                    break;
                }
                case "--perms":
                    perms = perms is null ? Octal(Next(option), option) : throw new BwrapUsageException("--perms given twice for the same action");
                    break;
                case "--size":
                    size = size is null ? BwrapRules.TmpfsSize(Next(option)) : throw new BwrapUsageException("--size given twice for the same action");
                    break;
                case "--bind-fd" or "--ro-bind-fd":
                {
                    // bwrap 0.11: bind the directory (or file) an open descriptor refers to, found by its path.
                    int fd = Fd(Next(option), option);
                    string dest = Next(option);
                    string source = BwrapHostSide.PathOfDescriptor(fd, option);
                    binds.Add((source, dest));
                    bindOps[ops.Count] = (source, dest);
                    ops.Add(option == "--ro-bind-fd" ? m => calls.Note(m, BwrapMountKind.Bind, dest, source).BindReadOnly(source, dest) : m => calls.Note(m, BwrapMountKind.Bind, dest, source).Bind(source, dest));
                    break;
                }
                case "--bind" or "--bind-try" or "--ro-bind" or "--ro-bind-try" or "--dev-bind" or "--dev-bind-try":
                {
                    string src = Next(option), dest = Next(option);
                    bool optional = option.EndsWith("-try", StringComparison.Ordinal);
                    string source = Absolute(src);
                    binds.Add((source, dest));
                    bindOps[ops.Count] = (source, dest);
                    ops.Add(option.StartsWith("--ro", StringComparison.Ordinal) ? m => calls.Note(m, BwrapMountKind.Bind, dest, source).BindReadOnly(source, dest, optional)
                        : option.StartsWith("--dev", StringComparison.Ordinal) ? m => calls.Note(m, BwrapMountKind.Bind, dest, source).DevBind(source, dest, optional)
                        : m => calls.Note(m, BwrapMountKind.Bind, dest, source).Bind(source, dest, optional: optional));
                    break;
                }
                case "--tmpfs":
                {
                    string dest = Next(option);
                    int mode = TakePerms(0x1ED);
                    Parents(dest, mode);
                    long? tmpfsSize = size;
                    size = null;
                    ops.Add(m => calls.Note(m, BwrapMountKind.Mount, dest, "tmpfs").Tmpfs(dest, tmpfsSize, (UnixFileMode)mode));
                    break;
                }
                case "--proc":
                {
                    // bwrap mounts a proc of the sandbox's own PID namespace, and without one binds the caller's /proc
                    // (which works in a new user namespace too). It makes the kernel's knobs under it (sys,
                    // sysrq-trigger, irq, bus) read-only where access(2) says it could write them: so as we see them,
                    // and never in a user namespace of its own, where the kernel refuses those writes anyway.
                    string dest = Next(option);
                    procTargets.Add(dest);
                    string[] knobs = [.. ((string[])["sys", "sysrq-trigger", "irq", "bus"]).Where(k => access("/proc/" + k, 2 /* W_OK */) == 0)
                        .Select(k => dest.TrimEnd('/') + "/" + k)];
                    ops.Add(m =>
                    {
                        MountPlanBuilder proc = ns.HasFlag(Namespaces.Pid) ? calls.Note(m, BwrapMountKind.Mount, dest, "proc").Proc(dest)
                            : calls.Note(m, BwrapMountKind.Bind, dest, "/proc").Bind("/proc", dest);
                        if (!ns.HasFlag(Namespaces.User) && knobs.Length > 0)
                            calls.Note(proc, BwrapMountKind.ReadOnly, dest).ReadOnlyPaths(knobs);
                    });
                    break;
                }
                case "--dev": { string dest = Next(option); ops.Add(m => calls.Note(m, BwrapMountKind.Dev, dest).Dev(dest)); break; }
                case "--mqueue": { string dest = Next(option); ops.Add(m => calls.Note(m, BwrapMountKind.Mount, dest, "mqueue").Mqueue(dest)); break; }
                case "--dir":
                {
                    string dest = Next(option);
                    int mode = TakePerms(0x1ED);
                    Parents(dest, mode);
                    ops.Add(m => calls.Note(m, BwrapMountKind.Dir, dest).Dir(dest, (UnixFileMode)mode));
                    break;
                }
                case "--symlink": { string target = Next(option), dest = Next(option); ops.Add(m => calls.Note(m, BwrapMountKind.Symlink, dest).Symlink(target, dest)); break; }
                case "--chmod": { int mode = Octal(Next(option), option); string path = Next(option); ops.Add(m => calls.Note(m, BwrapMountKind.Chmod, path, mode: mode).Chmod(path, (UnixFileMode)mode)); break; }
                case "--remount-ro": { string dest = Next(option); ops.Add(m => calls.Note(m, BwrapMountKind.RemountReadOnly, dest).RemountReadOnly(dest)); break; }
                case "--file" or "--bind-data" or "--ro-bind-data":
                {
                    int fd = Fd(Next(option), option);
                    string dest = Next(option);
                    // bwrap copies the data at setup; we read it now, before the sandbox exists.
                    byte[] data = SandboxFlags.ReadAll(fd);
                    int mode = TakePerms(option == "--file" ? 0x1B6 /* 0666, as bwrap */ : 0x180 /* 0600 */);
                    Parents(dest, mode);
                    bool readOnly = option == "--ro-bind-data";
                    ops.Add(m =>
                    {
                        calls.Note(m, BwrapMountKind.File, dest).File(dest, data, (UnixFileMode)mode);
                        if (readOnly)
                            calls.Note(m, BwrapMountKind.ReadOnly, dest).ReadOnlyPaths(dest);
                    });
                    break;
                }
                case "--overlay-src": overlaySources.Add(Absolute(Next(option))); break;
                case "--overlay" or "--tmp-overlay" or "--ro-overlay":
                {
                    string? upper = option == "--overlay" ? Absolute(Next(option)) : null;
                    string? work = option == "--overlay" ? Absolute(Next(option)) : null;
                    string dest = Next(option);
                    // bwrap's rule: a read-only overlay of one layer is a read-only bind, so it takes two.
                    if (overlaySources.Count < (option == "--ro-overlay" ? 2 : 1))
                        throw new BwrapUsageException($"{option} requires at least {(option == "--ro-overlay" ? "two" : "one")} --overlay-src");
                    // bwrap lists layers bottom first; overlayfs (and the library) wants the top first.
                    string[] layers = [.. Enumerable.Reverse(overlaySources)];
                    overlaySources.Clear();
                    ops.Add(option switch
                    {
                        "--overlay" => m => calls.Note(m, BwrapMountKind.Overlay, dest).Overlay(dest, layers, upper!, work!),
                        "--tmp-overlay" => m => calls.Note(m, BwrapMountKind.Overlay, dest).TmpOverlay(dest, layers),
                        _ => m => calls.Note(m, BwrapMountKind.Overlay, dest).ReadOnlyOverlay(dest, layers),
                    });
                    break;
                }
                case "--userns" or "--userns2" or "--pidns": joinFds[option] = Fd(Next(option), option); break;
                case "--exec-label" or "--file-label":
                    throw new BwrapUsageException($"{option} is not supported (isolate cannot set SELinux labels)");
                default:
                    // Resource limits and security: the same options as isolate unshare (SandboxFlags.cs).
                    if (!flags.TryTake(option, () => Next(option)))
                        throw new BwrapUsageException($"Unknown option {option}");
                    break;
            }
        }
        if (inv.Program is null)
            throw new BwrapUsageException("No program specified");
        BwrapRules.CheckModifiers(null, perms is not null, size is not null, overlaySources.Count);
        while (queue.First is { } rest)
        {
            inv.Arguments.Add(rest.Value);
            queue.RemoveFirst();
        }
        // /proc/self/exe is bwrap itself in bwrap's sandbox: here, isolate itself in bwrap mode (BwrapSelf.cs).
        if (BwrapSelf.Resolve(inv.Program, argv0, inv.Arguments) is var (self, selfArgv0, selfArguments))
        {
            (inv.Program, argv0, inv.RunsSelf) = (self, selfArgv0, true);
            inv.Arguments.Clear();
            inv.Arguments.AddRange(selfArguments);
        }

        // --userns, --userns2, --pidns: bwrap's rules, and --uid/--gid taken for a joined user namespace (BwrapJoins.cs).
        BwrapJoins? joins = BwrapJoins.Take(joinFds, ns, userTry, flags.Untrusted, ref uid, ref gid, out string? joinError);
        if (joinError is not null)
            throw new BwrapUsageException(joinError);

        // bwrap unshares the user namespace itself when it is not privileged (not setuid, not root).
        bool root = geteuid() == 0;
        if (userTry || !root)
            ns |= Namespaces.User;
        if (cgroupTry && File.Exists("/proc/self/ns/cgroup"))
            ns |= Namespaces.Cgroup;
        if (hostname is not null && !ns.HasFlag(Namespaces.Uts))
            throw new BwrapUsageException("Specifying --hostname requires --unshare-uts");
        if (uid is not null && !ns.HasFlag(Namespaces.User) && !flags.Untrusted)
            throw new BwrapUsageException("Specifying --uid requires --unshare-user or --userns");
        if (gid is not null && !ns.HasFlag(Namespaces.User) && !flags.Untrusted)
            throw new BwrapUsageException("Specifying --gid requires --unshare-user or --userns");
        if (asPid1 && !ns.HasFlag(Namespaces.Pid))
            throw new BwrapUsageException("Specifying --as-pid-1 requires --unshare-pid");
        if (asPid1 && lockFile)
            throw new BwrapUsageException("Specifying --as-pid-1 and --lock-file is not permitted");

        ns = joins?.Created(ns) ?? ns; // --userns: the user namespace is joined, not created
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
        b = joins?.Apply(b) ?? b;
        b = b.WithMounts(m =>
        {
            m.EmptyRoot();
            calls.Clear();
            for (int i = 0; i < ops.Count; i++)
            {
                ops[i](m);
                // A documented departure from bwrap: under --untrusted, the caller's runtime directories and
                // daemon sockets are masked even where a bind (of / say) brings them in.
                // It makes one call when the bind shows any of them.
                if (flags.Untrusted && bindOps.TryGetValue(i, out var bind)
                    && UntrustedCodePreset.HostRuntimePaths.Any(p => p.StartsWith(bind.Source.TrimEnd('/') + "/", StringComparison.Ordinal)))
                    UntrustedCodePreset.MaskHostRuntimePaths(calls.Note(m, BwrapMountKind.Mask, bind.Dest), bind.Source, bind.Dest);
            }
            if (flags.Untrusted)
                FreezeKernelKnobs(m, calls, procTargets, bindOps.Values);
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
        inv.Binds = binds;
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
    private static void FreezeKernelKnobs(MountPlanBuilder m, BwrapMountCalls calls, List<string> procTargets, IEnumerable<(string Source, string Dest)> binds)
    {
        foreach (string proc in procTargets)
        {
            string p = proc.TrimEnd('/');
            calls.Note(m, BwrapMountKind.Mask, p).MaskPaths(MountPlanBuilder.DefaultMaskedPaths.Where(x => x.StartsWith("/proc/", StringComparison.Ordinal)).Select(x => p + x[5..]));
            calls.Note(m, BwrapMountKind.ReadOnly, p).ReadOnlyPaths(MountPlanBuilder.DefaultReadOnlyPaths.Select(x => p + x[5..]));
        }
        foreach ((string source, string dest) in binds)
        {
            string s = source.TrimEnd('/'), d = dest.TrimEnd('/');
            foreach (string knob in (string[])["/proc", "/sys"])
            {
                if (knob.StartsWith(s + "/", StringComparison.Ordinal))
                    calls.Note(m, BwrapMountKind.ReadOnly, d + knob[s.Length..]).ReadOnlyPaths(d + knob[s.Length..]);
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
    private static IEnumerable<string> ParentsOf(string path)
    {
        string[] parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 1; i < parts.Length; i++)
            yield return "/" + string.Join('/', parts[..i]);
    }

    private static string Absolute(string path) => Path.IsPathRooted(path) ? path : Path.GetFullPath(path);

    private static uint UInt(string text, string option) =>
        uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint v) ? v : throw new BwrapUsageException($"Invalid {option[2..]}: {text}");

    private static int Fd(string text, string option) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int v) ? v : throw new BwrapUsageException($"Invalid fd: {text}");

    private static int Octal(string text, string option)
    {
        try
        {
            int mode = Convert.ToInt32(text, 8);
            return mode is >= 0 and <= 0xFFF ? mode : throw new FormatException();
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
        {
            throw new BwrapUsageException($"{option} takes an octal argument <= 07777");
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
    [DllImport("libc")] private static extern int access(string path, int mode);
}
