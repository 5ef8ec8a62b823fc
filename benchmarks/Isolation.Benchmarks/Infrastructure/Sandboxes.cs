using System.Diagnostics;
using Isolation.Mounts;

namespace Isolation.Benchmarks.Infrastructure;

/// <summary>The sandbox configurations the latency rows sweep, from none to all eight namespaces.</summary>
public enum Config
{
    /// <summary>No new namespaces: the row compared with Process.Start.</summary>
    None,

    /// <summary>A user namespace with the caller mapped to root.</summary>
    User,

    /// <summary>user + pid + mount + uts + ipc.</summary>
    UserPidMountUtsIpc,

    /// <summary>user + pid + mount + uts + ipc + net (lo brought up).</summary>
    UserPidMountUtsIpcNet,

    /// <summary>All eight namespaces (cgroup and time are unshared by the child after release).</summary>
    All,

    /// <summary>user + pid + mount with a new /proc: the target row (unshare --user --pid --map-root-user --mount-proc --fork).</summary>
    UserPidMountProc,
}

/// <summary>Builds the library's spec and the C floor's flags for each <see cref="Config"/>.</summary>
internal static class Sandboxes
{
    public const Namespaces Core = Namespaces.User | Namespaces.Pid | Namespaces.Mount;
    private const ulong CLONE_NEWTIME = 0x80;
    private const ulong CLONE_NEWCGROUP = 0x02000000;

    public static NamespaceBuilder Builder(Config config)
    {
        NamespaceBuilder b = new();
        return config switch
        {
            Config.None => b,
            Config.User => b.WithNamespaces(Namespaces.User).MapCurrentUserToRoot(),
            Config.UserPidMountUtsIpc => b.WithNamespaces(Core | Namespaces.Uts | Namespaces.Ipc).MapCurrentUserToRoot(),
            Config.UserPidMountUtsIpcNet => b.WithNamespaces(Core | Namespaces.Uts | Namespaces.Ipc | Namespaces.Net).MapCurrentUserToRoot(),
            Config.All => b.WithNamespaces(Namespaces.All).MapCurrentUserToRoot(),
            Config.UserPidMountProc => b.WithNamespaces(Core).MapCurrentUserToRoot().WithMounts(m => m.Proc("/proc")),
            _ => throw new ArgumentOutOfRangeException(nameof(config)),
        };
    }

    public static IsolationSpec Spec(Config config) => Builder(config).Build();

    /// <summary>The same work for the C floor: clone flags, and whether to map root, mount proc, bring lo up.</summary>
    public static (ulong CloneFlags, int Flags) FloorArgs(Config config) => config switch
    {
        Config.None => (0, 0),
        Config.User => ((ulong)Namespaces.User, Floor.MapRoot),
        Config.UserPidMountUtsIpc => ((ulong)(Core | Namespaces.Uts | Namespaces.Ipc), Floor.MapRoot),
        Config.UserPidMountUtsIpcNet => ((ulong)(Core | Namespaces.Uts | Namespaces.Ipc | Namespaces.Net), Floor.MapRoot | Floor.Loopback),
        // clone3 takes CLONE_NEWTIME and CLONE_NEWCGROUP directly; the library unshares them after release.
        Config.All => ((ulong)Namespaces.All, Floor.MapRoot | Floor.Loopback),
        Config.UserPidMountProc => ((ulong)Core, Floor.MapRoot | Floor.MountProc),
        _ => throw new ArgumentOutOfRangeException(nameof(config)),
    };

    /// <summary>Runs one sandbox start to exit the way an embedding application would.</summary>
    public static void RunToExit(IsolationSpec spec, string program)
    {
        using IsolatedProcess process = spec.Start(program);
        ExitStatus status = process.WaitForExit();
        if (status.Reason != TerminationReason.Exited || status.ExitCode != 0)
            throw new InvalidOperationException($"{program} in the sandbox ended with {status}");
    }

    /// <summary>The same, the way the README shows it: <c>await WaitForExitAsync()</c> and <c>await using</c>.</summary>
    public static async Task RunToExitAsync(IsolationSpec spec, string program)
    {
        await using IsolatedProcess process = spec.Start(program);
        ExitStatus status = await process.WaitForExitAsync().ConfigureAwait(false);
        if (status.Reason != TerminationReason.Exited || status.ExitCode != 0)
            throw new InvalidOperationException($"{program} in the sandbox ended with {status}");
    }

    /// <summary>Process.Start of <paramref name="program"/>, to exit.</summary>
    public static void ProcessStartToExit(string program)
    {
        using Process process = Process.Start(new ProcessStartInfo(program) { UseShellExecute = false })!;
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{program} exited with {process.ExitCode}");
    }
}
