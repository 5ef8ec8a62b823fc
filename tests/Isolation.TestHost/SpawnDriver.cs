using System.Text.Json;
using Isolation.IdMaps;

namespace Isolation.TestHost;

/// <summary>
/// Drives the library from a separate process, so tests can run it as an unprivileged user
/// (<c>setpriv --reuid=65534 ... isolation-testhost spawn ...</c>). Prints a <see cref="SpawnOutcome"/>.
/// </summary>
internal static class SpawnDriver
{
    public static async Task<int> RunAsync(string[] args)
    {
        var outcome = new SpawnOutcome();
        try
        {
            bool runAsync = args.Length > 0 && args[0] == "--run-async"; // IsolationSpec.RunAsync instead of Start
            if (runAsync)
                args = args[1..];
            int separator = Array.IndexOf(args, "--");
            if (separator < 0 || separator == args.Length - 1)
                throw new ArgumentException("spawn needs -- program [args...]");
            NamespaceBuilder builder = Configure(new NamespaceBuilder(), args[..separator]);
            IsolationSpec spec = builder.WithStandardOutput(Stdio.Pipe).Build();
            string program = args[separator + 1];
            string[] arguments = args[(separator + 2)..];
            try
            {
                if (runAsync)
                    await RunToEndAsync(spec, program, arguments, outcome);
                else
                    await RunOnceAsync(spec, program, arguments, outcome);
            }
            catch (SandboxSetupException)
            {
                // Fail once more and compare descriptors: a leak shows as growth between two equal failures.
                outcome.FdsBefore = CountFds();
                try { spec.Start(program, arguments).Dispose(); } catch (SandboxSetupException) { }
                outcome.FdsAfter = CountFds();
                throw;
            }
        }
        catch (SandboxSetupException e)
        {
            outcome.Error = new SetupError { Step = e.Step.ToString(), Errno = e.Errno, ErrnoName = e.ErrnoName, Message = e.Message, Hint = e.Hint };
        }
        catch (ArgumentException e)
        {
            outcome.ArgumentError = e.Message;
        }
        Console.Out.Write(JsonSerializer.Serialize(outcome, ReportJson.Default.SpawnOutcome));
        return 0;
    }

    private static async Task RunOnceAsync(IsolationSpec spec, string program, string[] arguments, SpawnOutcome outcome)
    {
        await using IsolatedProcess process = spec.Start(program, arguments);
        outcome.Started = true;
        Task<string> stdout = new StreamReader(process.StandardOutput!).ReadToEndAsync();
        ExitStatus status = await process.WaitForExitAsync();
        outcome.Stdout = await stdout;
        outcome.ExitCode = status.ExitCode;
        outcome.Signal = status.Signal;
        outcome.Reason = status.Reason.ToString();
        outcome.CgroupError = process.CgroupError;
        outcome.CgroupDirectories = [.. process.CgroupDirectories];
        outcome.Limits = LimitsOutcome.Of(process.Limits);
    }

    private static async Task RunToEndAsync(IsolationSpec spec, string program, string[] arguments, SpawnOutcome outcome)
    {
        SandboxResult result = await spec.RunAsync(program, arguments, standardInput: "input\n");
        outcome.Started = true;
        outcome.Stdout = result.StandardOutput;
        outcome.Stderr = result.StandardError;
        outcome.ExitCode = result.Status.ExitCode;
        outcome.Signal = result.Status.Signal;
        outcome.Reason = result.Status.Reason.ToString();
        outcome.CgroupError = result.CgroupError;
        outcome.Limits = LimitsOutcome.Of(result.Limits);
    }

    private static NamespaceBuilder Configure(NamespaceBuilder b, string[] options)
    {
        for (int i = 0; i < options.Length; i++)
        {
            string Next() => options[++i];
            b = options[i] switch
            {
                "--ns" => b.WithNamespaces(Next().Split(',').Select(n => Enum.Parse<Namespaces>(n, ignoreCase: true)).Aggregate(Namespaces.None, (a, n) => a | n)),
                "--map-root" => b.MapCurrentUserToRoot(),
                "--map-current" => b.MapCurrentUser(),
                "--map-users" => Range(Next(), (x, y, z) => b.MapUsers(x, y, z)),
                "--map-groups" => Range(Next(), (x, y, z) => b.MapGroups(x, y, z)),
                "--proc" => b.WithMounts(m => m.Proc(Next())),
                "--root" => b.WithMounts(m => m.Root(Next())),
                "--empty-root" => b.WithMounts(m => m.EmptyRoot()),
                "--bind" => Pair(Next(), (s, d) => b.WithMounts(m => m.Bind(s, d))),
                "--ro-bind" => Pair(Next(), (s, d) => b.WithMounts(m => m.BindReadOnly(s, d))),
                "--idmap" => Pair(Next(), (s, d) => b.WithMounts(m => m.IdmappedBind(s, d))),
                "--tmpfs" => b.WithMounts(m => m.Tmpfs(Next())),
                "--dev" => b.WithMounts(m => m.Dev(Next())),
                "--tmp-overlay" => Pair(Next(), (d, lower) => b.WithMounts(m => m.TmpOverlay(d, [lower]))),
                "--file" => Pair(Next(), (path, text) => b.WithMounts(m => m.File(path, text))),
                "--mask-defaults" => b.WithMounts(m => m.ContainerDefaults()),
                "--hostname" => b.WithHostname(Next()),
                "--join" => Pair(Next(), (kind, path) => b.JoinNamespace(Enum.Parse<Namespaces>(kind, ignoreCase: true), path)),
                "--init" => b.WithInit(),
                "--die-with-parent" => b.WithDieWithParent(),
                "--setgroups" => b.WithSetgroups(Enum.Parse<SetgroupsPolicy>(Next(), ignoreCase: true)),
                "--run-as" => Range(Next() + ":0", (u, g, _) => b.RunAs(u, g)),
                "--pids-max" => b.WithCgroup(c => c.PidsMax(long.Parse(Next()))),
                "--memory-max" => b.WithCgroup(c => c.MemoryMax(long.Parse(Next()))),
                "--cgroup-parent" => b.WithCgroup(c => c.Parent(Next())),
                "--cgroup-best-effort" => b.WithCgroup(c => c.BestEffort()),
                "--timeout-ms" => b.WithTimeout(TimeSpan.FromMilliseconds(int.Parse(Next()))),
                // security (tests/Isolation.Tests/Integration/Security*.cs, Escape*.cs)
                "--untrusted" => Isolation.Security.UntrustedCodePreset.Apply(b),
                "--setenv" => b.WithEnvironment(e => e.Set(options[i + 1], options[(i += 2)])),
                "--stdin-file" => b.WithStandardInput(Stdio.File(Next())),
                "--stdin-null" => b.WithStandardInput(Stdio.Null),
                "--stderr-null" => b.WithStandardError(Stdio.Null),
                "--cap-drop" => b.WithSecurity(s => s.DropCapabilities(Next())),
                "--cap-add" => b.WithSecurity(s => s.AddCapabilities(Next())),
                "--no-new-privs" => b.WithSecurity(s => s.NoNewPrivileges()),
                "--seccomp-default" => b.WithSecurity(s => s.WithDefaultSeccomp()),
                "--disable-userns" => b.WithSecurity(s => s.DisableNestedUserNamespaces()),
                "--landlock-ro" => b.WithSecurity(s => s.WithLandlock(l => l.AllowRead(Next()))),
                "--landlock-rx" => b.WithSecurity(s => s.WithLandlock(l => l.AllowExecute(Next()))),
                "--landlock-rw" => b.WithSecurity(s => s.WithLandlock(l => l.AllowReadWrite(Next()))),
                _ => throw new ArgumentException($"unknown spawn option {options[i]}"),
            };
        }
        return b;
    }

    private static NamespaceBuilder Range(string text, Func<uint, uint, uint, NamespaceBuilder> apply)
    {
        uint[] parts = text.Split(':').Select(uint.Parse).ToArray();
        return apply(parts[0], parts[1], parts[2]);
    }

    private static NamespaceBuilder Pair(string text, Func<string, string, NamespaceBuilder> apply)
    {
        int colon = text.IndexOf(':');
        return apply(text[..colon], text[(colon + 1)..]);
    }

    private static int CountFds() => Directory.GetFiles("/proc/self/fd").Length;
}

public sealed class SpawnOutcome
{
    public bool Started { get; set; }
    public int ExitCode { get; set; }
    public int Signal { get; set; }
    public string? Reason { get; set; }
    public string Stdout { get; set; } = "";
    public string Stderr { get; set; } = "";
    public SetupError? Error { get; set; }
    public string? ArgumentError { get; set; }
    public string? CgroupError { get; set; }
    public string[] CgroupDirectories { get; set; } = [];
    public LimitsOutcome? Limits { get; set; }
    public int FdsBefore { get; set; }
    public int FdsAfter { get; set; }
}

/// <summary>IsolatedProcess.Limits as JSON: each row's mechanism and value.</summary>
public sealed class LimitsOutcome
{
    public Dictionary<string, string> Mechanism { get; set; } = [];
    public Dictionary<string, long?> Value { get; set; } = [];
    public string Text { get; set; } = "";

    public static LimitsOutcome Of(SandboxLimits l)
    {
        var o = new LimitsOutcome { Text = l.ToString() };
        foreach ((string row, LimitState state) in new[] { ("pids", l.Pids), ("memory", l.Memory), ("cpu", l.Cpu), ("io", l.Io), ("tmpfs", l.Tmpfs), ("time", l.Time) })
        {
            o.Mechanism[row] = state.Mechanism.ToString();
            o.Value[row] = state.Value;
        }
        return o;
    }
}

public sealed class SetupError
{
    public string Step { get; set; } = "";
    public int Errno { get; set; }
    public string ErrnoName { get; set; } = "";
    public string Message { get; set; } = "";
    public string? Hint { get; set; }
}
