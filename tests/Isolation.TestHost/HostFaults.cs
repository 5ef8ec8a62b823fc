using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace Isolation.TestHost;

/// <summary>
/// The host side of tests/Isolation.Tests/Integration/HostFaultTests.cs: this process uses the library as a
/// host under a fault condition (it is PID 1, it was started with SIGCHLD ignored, it closed its own stdio,
/// it gets SIGKILLed mid-start) and prints what happened as JSON. Each command says what it measures.
/// <code>
/// isolation-testhost statuses [--count 120] [--parallel 8] [--process-start]
/// isolation-testhost dumpable [--count 100] [--parallel 4]
/// isolation-testhost closed-stdio --out FILE
/// isolation-testhost hold --marker M [--run-as] [--die-with-parent]
/// isolation-testhost storm --marker M [--threads 16] [--die-with-parent] [--cgroup]
/// isolation-testhost pipe-file --mode alone|concurrent [--timeout-ms 10000]
/// isolation-testhost subreaper PROGRAM [ARGS...]
/// </code>
/// </summary>
internal static partial class HostFaults
{
    private const int PR_GET_DUMPABLE = 3, PR_SET_DUMPABLE = 4, PR_SET_CHILD_SUBREAPER = 36, KCMP_VM = 1 /* kcmp(2): KCMP_FILE is 0 */, O_CLOEXEC = 0x80000, F_GETFD = 1, EBADF = 9;

    // Sandboxes never write to the host's stdout: it carries the JSON the test reads.
    private static NamespaceBuilder Quiet(NamespaceBuilder b) =>
        b.WithStandardInput(Stdio.Null).WithStandardOutput(Stdio.Null).WithStandardError(Stdio.Null);

    private static NamespaceBuilder UserAndPid() =>
        Quiet(new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid).MapCurrentUserToRoot());

    // As root: uid/gid 1000 inside is 101000 outside, so switching to it is a real credential change.
    private static NamespaceBuilder RunAsMappedUser(NamespaceBuilder b) =>
        b.MapUsers(0, 100000, 65536).MapGroups(0, 100000, 65536).RunAs(1000, 1000);

    /// <summary>
    /// Starts <c>--count</c> sandboxes (user + PID namespaces, <c>sh -c 'exit K'</c>, K = i % 100), <c>--parallel</c>
    /// at a time, and counts those whose exit status came back right. With <c>--process-start</c> a loop of
    /// <see cref="Process.Start(string)"/> runs all along: .NET then reaps with waitpid(-1) when this process
    /// is PID 1 or inherited SIGCHLD ignored, and a sandbox that is our own child can lose its status to it.
    /// </summary>
    public static async Task<int> StatusesAsync(string[] args)
    {
        int count = IntArg(args, "--count", 120), parallel = IntArg(args, "--parallel", 8);
        var outcome = new StatusesOutcome { HostPid = Environment.ProcessId, Count = count, SignalsAtStart = SignalDispositions(), SigchldIgnoredAtStart = SigchldIgnored() };
        var errors = new ErrorTally();
        IsolationSpec spec = UserAndPid().Build();

        using var stop = new CancellationTokenSource();
        using var firstStart = new ManualResetEventSlim();
        Thread? background = null;
        if (Flag(args, "--process-start"))
        {
            background = new Thread(() =>
            {
                while (!stop.IsCancellationRequested)
                {
                    using (Process p = Process.Start(new ProcessStartInfo("/bin/true") { UseShellExecute = false })!)
                        p.WaitForExit();
                    Interlocked.Increment(ref outcome.ProcessStartsField);
                    firstStart.Set();
                }
            }) { IsBackground = true, Name = "Process.Start loop" };
            background.Start();
            firstStart.Wait(TimeSpan.FromSeconds(10)); // the runtime reaps children of others only once it has started one
        }

        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = parallel }, async (i, _) =>
        {
            int expected = i % 100;
            try
            {
                await using IsolatedProcess process = spec.Start("/bin/sh", "-c", $"exit {expected}");
                Interlocked.Increment(ref outcome.StartedField);
                ExitStatus status = await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
                if (status.Reason == TerminationReason.Exited && status.ExitCode == expected)
                    Interlocked.Increment(ref outcome.CorrectField);
                else
                    errors.Add($"wrong status: expected exit {expected}, got {status}");
            }
            catch (Exception e)
            {
                errors.Add($"{e.GetType().Name}: {e.Message}");
            }
        });
        stop.Cancel();
        background?.Join(TimeSpan.FromSeconds(5));
        errors.CopyTo(outcome);
        return Emit(JsonSerializer.Serialize(outcome, HostFaultJson.Default.StatusesOutcome), null);
    }

    /// <summary>
    /// A sampler thread reads this process's dumpable flag (prctl PR_GET_DUMPABLE) and compares its memory
    /// with every other process of the machine (kcmp KCMP_VM) in a tight loop, while sandboxes start in two
    /// phases: RunAs with a mapped range on a dumpable host, then DisableNestedUserNamespaces on a host made
    /// non-dumpable first. A child that shares our mm (CLONE_VM) makes its credential changes on us.
    /// </summary>
    public static async Task<int> DumpableAsync(string[] args)
    {
        int count = IntArg(args, "--count", 100), parallel = IntArg(args, "--parallel", 4);
        var outcome = new DumpableOutcome { HostPid = Environment.ProcessId, KcmpAvailable = Kcmp(Environment.ProcessId, Environment.ProcessId) == 0 };

        // Warm-up, before sampling: the spawn helpers are started with posix_spawn, which shares our mm for the
        // microseconds before its exec, and the pool adds one whenever every helper is busy, up to one per core.
        // That is not a sandbox's start, so concurrent starts fill the pool before the sampler looks.
        await FillHelperPoolAsync(Quiet(new NamespaceBuilder()).Build(), parallel);

        (string Name, int Dumpable, NamespaceBuilder Builder)[] phases =
        [
            ("run-as with a mapped range", 1, RunAsMappedUser(Quiet(new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid)))),
            ("disable nested user namespaces", 0, UserAndPid().WithSecurity(s => s.DisableNestedUserNamespaces())),
        ];
        foreach ((string name, int dumpable, NamespaceBuilder builder) in phases)
        {
            prctl(PR_SET_DUMPABLE, (nuint)dumpable, 0, 0, 0);
            var phase = new DumpablePhase { Name = name, Expected = dumpable };
            var errors = new ErrorTally();
            using var sampler = new Sampler(phase, outcome.KcmpAvailable);
            IsolationSpec spec = builder.Build();
            await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = parallel }, async (_, _) =>
            {
                try
                {
                    await using IsolatedProcess process = spec.Start("/bin/true");
                    Interlocked.Increment(ref phase.StartedField);
                    await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
                }
                catch (Exception e)
                {
                    errors.Add($"{e.GetType().Name}: {e.Message}");
                }
            });
            sampler.Stop();
            phase.Final = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
            errors.CopyTo(phase);
            outcome.Phases.Add(phase);
        }
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        return Emit(JsonSerializer.Serialize(outcome, HostFaultJson.Default.DumpableOutcome), null);
    }

    /// <summary>Starts sandboxes <paramref name="parallel"/> at a time until this process has a spawn helper per core (the pool's maximum).</summary>
    private static async Task FillHelperPoolAsync(IsolationSpec spec, int parallel)
    {
        int full = Math.Clamp(Environment.ProcessorCount, 1, 8);
        for (int round = 0; round < 50 && SpawnHelperCount() < full; round++)
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, parallel * 4), new ParallelOptions { MaxDegreeOfParallelism = parallel }, async (_, _) =>
            {
                await using IsolatedProcess process = spec.Start("/bin/true");
                await process.WaitForExitAsync();
            });
        }

        static int SpawnHelperCount() =>
            ProcessTable.Descendants(Environment.ProcessId).Count(e => e.ParentPid == Environment.ProcessId && e.Executable.EndsWith("/isolation-helper", StringComparison.Ordinal));
    }

    /// <summary>The sampler thread of <see cref="DumpableAsync"/>: records every flip and every process sharing our mm.</summary>
    private sealed class Sampler : IDisposable
    {
        private readonly DumpablePhase _phase;
        private readonly bool _kcmp;
        private readonly Thread _thread;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private volatile bool _stop;
        private int _last;

        public Sampler(DumpablePhase phase, bool kcmp)
        {
            _phase = phase;
            _kcmp = kcmp;
            _last = phase.Expected;
            _thread = new Thread(Run) { IsBackground = true, Name = "dumpable sampler" };
            _thread.Start();
        }

        private void Run()
        {
            int self = Environment.ProcessId;
            var seen = new HashSet<int>();
            while (!_stop)
            {
                Sample();
                if (!_kcmp)
                    continue;
                int n = 0;
                // /proc lists thread-group leaders only, so our own threads never show up here.
                foreach (string dir in Directory.EnumerateDirectories("/proc"))
                {
                    if (!int.TryParse(Path.GetFileName(dir), out int pid) || pid == self)
                        continue;
                    if (Kcmp(self, pid) == 0 && seen.Add(pid) && _phase.SharedMemory.Count < 50)
                        _phase.SharedMemory.Add(ProcessTable.Read(pid)?.ToString() ?? $"pid {pid} (gone)");
                    _phase.KcmpChecks++;
                    if (++n % 8 == 0)
                        Sample();
                }
            }
        }

        private void Sample()
        {
            int value = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
            _phase.Samples++;
            if (value != _phase.Expected)
                _phase.UnexpectedSamples++;
            if (value != _last && _phase.Flips.Count < 50)
                _phase.Flips.Add(new Flip { From = _last, To = value, AtMilliseconds = _clock.Elapsed.TotalMilliseconds });
            _last = value;
        }

        public void Stop()
        {
            _stop = true;
            _thread.Join();
        }

        public void Dispose() => Stop();
    }

    /// <summary>
    /// Closes this process's fds 0, 1 and 2 with close(2) after start-up (the runtime fills them at launch,
    /// so closing them in a shell proves nothing) and after one warm-up start, then starts WithInit()
    /// sandboxes and writes the outcomes to FILE: descriptors the library opens now land on 0..2.
    /// </summary>
    public static async Task<int> ClosedStdioAsync(string[] args)
    {
        string file = Arg(args, "--out") ?? throw new ArgumentException("closed-stdio needs --out FILE");
        var outcome = new ClosedStdioOutcome();
        NamespaceBuilder withInit = new NamespaceBuilder()
            .WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount).MapCurrentUserToRoot()
            .WithMounts(m => m.Proc("/proc")).WithInit();
        (string Name, NamespaceBuilder Builder)[] sandboxes =
        [
            ("init, stdio /dev/null", Quiet(withInit)),
            ("init, stdio inherited (closed)", withInit),
            ("init, stdio /dev/null, again", Quiet(withInit)),
            ("no init, stdio /dev/null", Quiet(withInit.WithInit(false))),
        ];

        // Warm-up, stdio still open: the runtime keeps a descriptor per assembly it loads, and would take the
        // freed numbers first. One start without init loads the library; the init is loaded on first use, below.
        outcome.WarmUp = await RunAsync("warm-up: no init, stdio /dev/null", Quiet(withInit.WithInit(false)), "/bin/sh", "-c", "exit 3");
        for (int fd = 0; fd < 3; fd++)
            close(fd);
        outcome.StdioClosed = Enumerable.Range(0, 3).All(fd => fcntl(fd, F_GETFD, 0) == -1 && Marshal.GetLastPInvokeError() == EBADF);

        foreach ((string name, NamespaceBuilder builder) in sandboxes)
            outcome.Sandboxes.Add(await RunAsync(name, builder, "/bin/sh", "-c", "exit 3"));
        // What the library (or the runtime) now keeps on 0..2, for the report.
        outcome.LowDescriptors = [.. Enumerable.Range(0, 3).Select(fd => $"{fd} -> {DescriptorTarget(fd)}")];
        File.WriteAllText(file, JsonSerializer.Serialize(outcome, HostFaultJson.Default.ClosedStdioOutcome));
        return 0;
    }

    /// <summary>
    /// Starts sandboxes running <c>sleep 1000</c> with argv0 = M (user + PID namespaces; the same with RunAs
    /// to a mapped uid when <c>--run-as</c>; user namespace only, no PID namespace), prints their pids and
    /// sleeps, so the test can SIGKILL this host and look for anything with M in its argv.
    /// </summary>
    public static int Hold(string[] args)
    {
        string marker = Arg(args, "--marker") ?? throw new ArgumentException("hold needs --marker M");
        bool dieWithParent = Flag(args, "--die-with-parent");
        NamespaceBuilder Marked(NamespaceBuilder b) => dieWithParent ? b.WithArgv0(marker).WithDieWithParent() : b.WithArgv0(marker);

        var kinds = new List<(string, NamespaceBuilder)> { ("user + pid namespaces", Marked(UserAndPid())) };
        if (Flag(args, "--run-as"))
        {
            kinds.Add(("user + pid namespaces, run as a mapped uid", Marked(RunAsMappedUser(Quiet(new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid))))));
            // Every identity switch clears the death signal (commit_creds): a nested user namespace and a whole preset too.
            kinds.Add(("user + pid namespaces, nested user namespaces disabled", Marked(Quiet(UserAndPid().WithSecurity(sec => sec.DisableNestedUserNamespaces())))));
            kinds.Add(("the untrusted preset", Marked(NamespaceBuilder.ForUntrustedCode())));
        }
        kinds.Add(("user namespace only (no pid namespace)", Marked(Quiet(new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot()))));

        var outcome = new HoldOutcome { HostPid = Environment.ProcessId };
        var held = new List<IsolatedProcess>();
        foreach ((string kind, NamespaceBuilder builder) in kinds)
        {
            try
            {
                IsolatedProcess process = builder.Build().Start("/bin/sleep", "1000");
                held.Add(process);
                outcome.Sandboxes.Add(new HeldSandbox { Kind = kind, Pid = process.Id });
            }
            catch (Exception e)
            {
                outcome.Errors.Add($"{kind}: {e.GetType().Name}: {e.Message}");
            }
        }
        Emit(JsonSerializer.Serialize(outcome, HostFaultJson.Default.HoldOutcome) + "\n", null);
        Thread.Sleep(Timeout.Infinite); // until the test kills us
        GC.KeepAlive(held);
        return 0;
    }

    /// <summary>
    /// <c>--threads</c> threads start sandboxes (user + PID namespaces, argv0 = M, <c>sleep 1000</c>) in a loop,
    /// each keeping its last four and disposing older ones, until the test SIGKILLs this host. Prints one line
    /// once the first sandbox has started.
    /// </summary>
    public static int Storm(string[] args)
    {
        string marker = Arg(args, "--marker") ?? throw new ArgumentException("storm needs --marker M");
        int threads = IntArg(args, "--threads", 16);
        NamespaceBuilder builder = UserAndPid().WithArgv0(marker);
        if (Flag(args, "--die-with-parent"))
            builder = builder.WithDieWithParent();
        if (Flag(args, "--cgroup"))
            builder = builder.WithCgroup(c => c.PidsMax(64)); // CgroupReclaimTests: a host killed in the middle of starts with cgroups
        IsolationSpec spec = builder.Build();

        using var started = new ManualResetEventSlim();
        for (int t = 0; t < threads; t++)
        {
            new Thread(() =>
            {
                var held = new Queue<IsolatedProcess>();
                while (true)
                {
                    try
                    {
                        held.Enqueue(spec.Start("/bin/sleep", "1000"));
                        started.Set();
                        if (held.Count > 4)
                            held.Dequeue().Dispose();
                    }
                    catch (Exception e)
                    {
                        Console.Error.WriteLine($"storm: {e.GetType().Name}: {e.Message}");
                        Thread.Sleep(10);
                    }
                }
            }) { IsBackground = true, Name = $"storm {t}" }.Start();
        }
        started.Wait();
        Emit(JsonSerializer.Serialize(new StormReady { HostPid = Environment.ProcessId, Threads = threads }, HostFaultJson.Default.StormReady) + "\n", null);
        Thread.Sleep(Timeout.Infinite);
        return 0;
    }

    /// <summary>
    /// A launcher for <see cref="Hold"/> and <see cref="Storm"/>: becomes a child subreaper (prctl(2)
    /// PR_SET_CHILD_SUBREAPER), runs PROGRAM with our stdio and waits for ever. Whatever a killed host leaves
    /// behind is reparented here instead of to init, so the test finds it as a descendant of this process
    /// however fast it churns and whatever its argv says (a child caught before exec has no marker yet).
    /// </summary>
    public static int Subreaper(string[] args)
    {
        if (args.Length == 0)
            throw new ArgumentException("subreaper needs PROGRAM [ARGS...]");
        if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
            throw new InvalidOperationException($"prctl(PR_SET_CHILD_SUBREAPER) failed: errno {Marshal.GetLastPInvokeError()}");
        var info = new ProcessStartInfo(args[0]) { UseShellExecute = false };
        foreach (string a in args[1..])
            info.ArgumentList.Add(a);
        using Process program = Process.Start(info)!;
        Thread.Sleep(Timeout.Infinite); // orphans stay our children (zombies once they exit) until the test ends us
        return 0;
    }

    /// <summary>
    /// FileFromDescriptor fed by a pipe (bubblewrap's <c>--file FD</c> with a producer). <c>alone</c>: the start
    /// begins while our writer still holds the write end; we write and close it 300 ms later. <c>concurrent</c>:
    /// sandbox A starts so, and while A waits for its data we write B's pipe, close B's write end and start B.
    /// A start that has not finished within <c>--timeout-ms</c> is reported; its leftovers are killed.
    /// </summary>
    public static int PipeFile(string[] args)
    {
        string mode = Arg(args, "--mode") ?? "alone";
        if (mode is not ("alone" or "concurrent"))
            throw new ArgumentException("pipe-file --mode is alone or concurrent");
        int timeout = IntArg(args, "--timeout-ms", 10000);
        var outcome = new PipeFileOutcome { Mode = mode };

        (int readA, int writeA) = Pipe();
        (int readB, int writeB) = mode == "concurrent" ? Pipe() : (-1, -1);
        var a = new SandboxOutcome { Name = "A" };
        Task startA = StartReadingPipe(a, readA);
        Thread.Sleep(300); // A's start is now under way, its child waiting for the end of its pipe
        if (mode == "concurrent")
        {
            WriteAndClose(writeB, "from B's pipe");
            var b = new SandboxOutcome { Name = "B" };
            outcome.Sandboxes.Add(Finish(StartReadingPipe(b, readB), b, timeout));
        }
        WriteAndClose(writeA, "from A's pipe");
        outcome.Sandboxes.Insert(0, Finish(startA, a, timeout));

        // A start that hung left children in the middle of their setup; kill them so nothing outlives us.
        if (outcome.Sandboxes.Any(s => s.Error is not null))
        {
            foreach (ProcessEntry leftover in ProcessTable.Descendants(Environment.ProcessId))
            {
                ProcessTable.Kill(leftover);
                outcome.KilledLeftovers.Add(leftover.ToString());
            }
        }
        Emit(JsonSerializer.Serialize(outcome, HostFaultJson.Default.PipeFileOutcome), null);
        Environment.Exit(0); // a start that never returned still holds a thread
        return 0;
    }

    private static Task StartReadingPipe(SandboxOutcome outcome, int fd) =>
        Task.Factory.StartNew(() => RunAsync(outcome, new NamespaceBuilder()
                .WithNamespaces(Namespaces.User | Namespaces.Mount).MapCurrentUserToRoot()
                .WithMounts(m => m.Tmpfs("/tmp").FileFromDescriptor("/tmp/from-pipe", fd))
                .WithStandardOutput(Stdio.Pipe), "/bin/cat", "/tmp/from-pipe").GetAwaiter().GetResult(),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    /// <summary>The outcome once the run has finished, or what was known when <paramref name="timeoutMs"/> ran out (frozen: killing leftovers may yet end the run).</summary>
    private static SandboxOutcome Finish(Task run, SandboxOutcome outcome, int timeoutMs) =>
        run.Wait(timeoutMs) ? outcome : new SandboxOutcome
        {
            Name = outcome.Name,
            Started = outcome.Started,
            Error = outcome.Started ? $"the program did not finish within {timeoutMs} ms" : $"Start did not return within {timeoutMs} ms",
        };

    private static Task<SandboxOutcome> RunAsync(string name, NamespaceBuilder builder, string program, params string[] arguments) =>
        RunAsync(new SandboxOutcome { Name = name }, builder, program, arguments);

    /// <summary>Starts one sandbox and waits for it; every failure becomes part of the outcome.</summary>
    private static async Task<SandboxOutcome> RunAsync(SandboxOutcome outcome, NamespaceBuilder builder, string program, params string[] arguments)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            await using IsolatedProcess process = builder.Build().Start(program, arguments);
            outcome.Started = true;
            outcome.StartMilliseconds = clock.Elapsed.TotalMilliseconds;
            Task<string> output = process.StandardOutput is { } stdout ? new StreamReader(stdout).ReadToEndAsync() : Task.FromResult("");
            ExitStatus status = await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            outcome.Output = await output;
            outcome.ExitCode = status.ExitCode;
            outcome.Signal = status.Signal;
            outcome.Reason = status.Reason.ToString();
        }
        catch (Exception e)
        {
            outcome.Error = $"{e.GetType().Name}: {e.Message}";
        }
        return outcome;
    }

    // --- helpers ---

    private static int Emit(string json, string? file)
    {
        if (file is not null)
        {
            File.WriteAllText(file, json);
            return 0;
        }
        Console.Out.Write(json);
        Console.Out.Flush();
        return 0;
    }

    private static string? Arg(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    private static int IntArg(string[] args, string name, int fallback) => Arg(args, name) is { } v ? int.Parse(v) : fallback;

    private static bool Flag(string[] args, string name) => args.Contains(name);

    /// <summary>SigIgn and SigCgt of this process as the kernel reports them (after the runtime's start-up).</summary>
    private static string SignalDispositions() =>
        string.Join(", ", File.ReadLines("/proc/self/status").Where(l => l.StartsWith("SigIgn:") || l.StartsWith("SigCgt:")).Select(l => Regex.Replace(l, @"\s+", " ")));

    /// <summary>Whether SIGCHLD (17) is ignored, per the SigIgn mask in /proc/self/status.</summary>
    private static bool SigchldIgnored()
    {
        string mask = File.ReadLines("/proc/self/status").First(l => l.StartsWith("SigIgn:"))["SigIgn:".Length..].Trim();
        return (Convert.ToUInt64(mask, 16) & (1UL << (17 - 1))) != 0;
    }

    private static string DescriptorTarget(int fd)
    {
        try { return new FileInfo($"/proc/self/fd/{fd}").LinkTarget ?? "(closed)"; }
        catch (IOException) { return "(closed)"; }
    }

    private static unsafe (int Read, int Write) Pipe()
    {
        int* fds = stackalloc int[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
            throw new InvalidOperationException($"pipe2 failed: errno {Marshal.GetLastPInvokeError()}");
        return (fds[0], fds[1]);
    }

    private static unsafe void WriteAndClose(int fd, string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        fixed (byte* p = bytes)
            write(fd, p, (nuint)bytes.Length);
        close(fd);
    }

    private static readonly long KcmpNumber = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 312 : 272;

    /// <summary>kcmp(2) KCMP_VM: 0 when both processes use the same memory descriptor.</summary>
    private static long Kcmp(int pid1, int pid2) => syscall(KcmpNumber, pid1, pid2, KCMP_VM, 0, 0);

    [LibraryImport("libc", SetLastError = true)] private static partial int prctl(int option, nuint a2, nuint a3, nuint a4, nuint a5);
    [LibraryImport("libc", SetLastError = true)] private static partial int close(int fd);
    [LibraryImport("libc", SetLastError = true)] private static partial int fcntl(int fd, int cmd, int arg);
    [LibraryImport("libc", SetLastError = true)] private static unsafe partial int pipe2(int* fds, int flags);
    [LibraryImport("libc", SetLastError = true)] private static unsafe partial nint write(int fd, byte* buffer, nuint count);
    [LibraryImport("libc", SetLastError = true)] private static partial long syscall(long number, long a, long b, long c, long d, long e);
}

/// <summary>Errors by kind (numbers folded, so "pid 123" and "pid 456" count together), plus the first few verbatim.</summary>
internal sealed class ErrorTally
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, int> _kinds = [];
    private readonly List<string> _examples = [];

    public void Add(string message)
    {
        string kind = Regex.Replace(message, @"\d+", "N");
        lock (_lock)
        {
            _kinds[kind] = _kinds.GetValueOrDefault(kind) + 1;
            if (_examples.Count < 5)
                _examples.Add(message);
        }
    }

    public void CopyTo(IErrorReport report)
    {
        report.Errors = new Dictionary<string, int>(_kinds);
        report.ErrorExamples = [.. _examples];
    }
}

public interface IErrorReport
{
    Dictionary<string, int> Errors { get; set; }
    List<string> ErrorExamples { get; set; }
}

public sealed class StatusesOutcome : IErrorReport
{
    internal int StartedField, CorrectField, ProcessStartsField;
    public int HostPid { get; set; }
    public string SignalsAtStart { get; set; } = "";
    public bool SigchldIgnoredAtStart { get; set; }
    public int Count { get; set; }
    public int Started { get => StartedField; set => StartedField = value; }
    public int Correct { get => CorrectField; set => CorrectField = value; }
    public int ProcessStarts { get => ProcessStartsField; set => ProcessStartsField = value; }
    public Dictionary<string, int> Errors { get; set; } = [];
    public List<string> ErrorExamples { get; set; } = [];
}

public sealed class DumpableOutcome
{
    public int HostPid { get; set; }
    public bool KcmpAvailable { get; set; }
    public List<DumpablePhase> Phases { get; set; } = [];
}

public sealed class DumpablePhase : IErrorReport
{
    internal int StartedField;
    public string Name { get; set; } = "";
    public int Expected { get; set; }
    public int Final { get; set; }
    public int Started { get => StartedField; set => StartedField = value; }
    public long Samples { get; set; }
    public long UnexpectedSamples { get; set; }
    public long KcmpChecks { get; set; }
    public List<Flip> Flips { get; set; } = [];
    public List<string> SharedMemory { get; set; } = [];
    public Dictionary<string, int> Errors { get; set; } = [];
    public List<string> ErrorExamples { get; set; } = [];
}

public sealed class Flip
{
    public int From { get; set; }
    public int To { get; set; }
    public double AtMilliseconds { get; set; }
}

public sealed class ClosedStdioOutcome
{
    public SandboxOutcome? WarmUp { get; set; }
    public bool StdioClosed { get; set; }
    public List<string> LowDescriptors { get; set; } = [];
    public List<SandboxOutcome> Sandboxes { get; set; } = [];
}

public sealed class SandboxOutcome
{
    public string Name { get; set; } = "";
    public bool Started { get; set; }
    public double StartMilliseconds { get; set; }
    public int ExitCode { get; set; }
    public int Signal { get; set; }
    public string? Reason { get; set; }
    public string Output { get; set; } = "";
    public string? Error { get; set; }

    public override string ToString() =>
        Error is not null ? $"{Name}: {Error}" : $"{Name}: {Reason} exit {ExitCode} signal {Signal}, output '{Output}'";
}

public sealed class HoldOutcome
{
    public int HostPid { get; set; }
    public List<HeldSandbox> Sandboxes { get; set; } = [];
    public List<string> Errors { get; set; } = [];
}

public sealed class HeldSandbox
{
    public string Kind { get; set; } = "";
    public int Pid { get; set; }
}

public sealed class StormReady
{
    public int HostPid { get; set; }
    public int Threads { get; set; }
}

public sealed class PipeFileOutcome
{
    public string Mode { get; set; } = "";
    public List<SandboxOutcome> Sandboxes { get; set; } = [];
    public List<string> KilledLeftovers { get; set; } = [];
}

[JsonSerializable(typeof(StatusesOutcome))]
[JsonSerializable(typeof(DumpableOutcome))]
[JsonSerializable(typeof(ClosedStdioOutcome))]
[JsonSerializable(typeof(HoldOutcome))]
[JsonSerializable(typeof(StormReady))]
[JsonSerializable(typeof(PipeFileOutcome))]
public sealed partial class HostFaultJson : JsonSerializerContext;
