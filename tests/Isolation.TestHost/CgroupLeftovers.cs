using System.Text.Json;
using System.Text.Json.Serialization;
using Isolation.Cgroups;

namespace Isolation.TestHost;

/// <summary>
/// The host side of tests/Isolation.Tests/Integration/CgroupReclaimTests.cs: hosts that own sandboxes with
/// cgroups and get SIGKILLed, and the next process of the library that reclaims what they left (hosts killed in
/// the middle of starts with cgroups are HostFaults.cs's storm with --cgroup).
/// <code>
/// isolation-testhost cgroup-hold      start sandboxes with cgroups (one leaves a stray process in its cgroup), print them, sleep
/// isolation-testhost cgroup-reclaim --first-use|--explicit   reclaim by a first start with a cgroup, or by IsolationCgroups.ReclaimLeftovers()
/// </code>
/// </summary>
internal static class CgroupLeftovers
{
    private static NamespaceBuilder Quiet(NamespaceBuilder b) =>
        b.WithStandardInput(Stdio.Null).WithStandardOutput(Stdio.Null).WithStandardError(Stdio.Null);

    private static NamespaceBuilder WithPidsCgroup(NamespaceBuilder b) => b.WithCgroup(c => c.PidsMax(64));

    /// <summary>
    /// Two sandboxes with cgroups: user + PID namespaces running sleep; and a user namespace alone running a
    /// shell that backgrounds a sleep (the stray: no parent-death signal, no PID namespace to end it, so it
    /// stays in the cgroup after the host dies) and execs sleep. Prints their pids, cgroup directories and the stray's pid.
    /// </summary>
    public static int Hold(string[] args)
    {
        var outcome = new CgroupHoldOutcome { HostPid = Environment.ProcessId };
        var held = new List<IsolatedProcess>();
        try
        {
            IsolatedProcess plain = Quiet(WithPidsCgroup(new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Pid).MapCurrentUserToRoot()))
                .Build().Start("/bin/sleep", "1000");
            held.Add(plain);
            IsolatedProcess withStray = Quiet(WithPidsCgroup(new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot()))
                .WithStandardOutput(Stdio.Pipe).Build().Start("/bin/sh", "-c", "sleep 1000 & echo $!; exec sleep 1000");
            held.Add(withStray);
            outcome.StrayPid = int.Parse(new StreamReader(withStray.StandardOutput!).ReadLine()!);
            foreach (IsolatedProcess p in held)
                outcome.Sandboxes.Add(new HeldCgroupSandbox { Pid = p.Id, Directories = [.. p.CgroupDirectories] });
        }
        catch (Exception e)
        {
            outcome.Errors.Add($"{e.GetType().Name}: {e.Message}");
        }
        Console.Out.Write(JsonSerializer.Serialize(outcome, CgroupLeftoverJson.Default.CgroupHoldOutcome) + "\n");
        Console.Out.Flush();
        Thread.Sleep(Timeout.Infinite); // until the test kills us
        GC.KeepAlive(held);
        return 0;
    }

    /// <summary>
    /// <c>--first-use</c>: the first start with a cgroup in this process (which reclaims once), then the result of a
    /// second, explicit reclaim (nothing left to do if the first did its job). <c>--explicit</c>: only the call.
    /// </summary>
    public static int Reclaim(string[] args)
    {
        var outcome = new CgroupReclaimOutcome { HostPid = Environment.ProcessId, OwnerDirectory = IsolationCgroups.OwnerDirectory };
        try
        {
            if (args.Contains("--first-use"))
            {
                using IsolatedProcess p = Quiet(WithPidsCgroup(new NamespaceBuilder())).Build().Start("/bin/true");
                p.WaitForExit();
            }
            CgroupReclaimResult result = IsolationCgroups.ReclaimLeftovers();
            outcome.Removed = [.. result.RemovedDirectories];
            outcome.Failures = [.. result.Failures];
            outcome.KilledProcesses = result.KilledProcesses;
            outcome.DeadOwners = result.DeadOwners;
            outcome.LiveOwners = result.LiveOwners;
        }
        catch (Exception e)
        {
            outcome.Error = $"{e.GetType().Name}: {e.Message}";
        }
        Console.Out.Write(JsonSerializer.Serialize(outcome, CgroupLeftoverJson.Default.CgroupReclaimOutcome));
        return 0;
    }
}

public sealed class CgroupHoldOutcome
{
    public int HostPid { get; set; }
    public List<HeldCgroupSandbox> Sandboxes { get; set; } = [];
    public int StrayPid { get; set; }
    public List<string> Errors { get; set; } = [];
}

public sealed class HeldCgroupSandbox
{
    public int Pid { get; set; }
    public List<string> Directories { get; set; } = [];
}

public sealed class CgroupReclaimOutcome
{
    public int HostPid { get; set; }
    public string? OwnerDirectory { get; set; }
    public List<string> Removed { get; set; } = [];
    public List<string> Failures { get; set; } = [];
    public int KilledProcesses { get; set; }
    public int DeadOwners { get; set; }
    public int LiveOwners { get; set; }
    public string? Error { get; set; }
}

[JsonSerializable(typeof(CgroupHoldOutcome))]
[JsonSerializable(typeof(CgroupReclaimOutcome))]
public sealed partial class CgroupLeftoverJson : JsonSerializerContext;
