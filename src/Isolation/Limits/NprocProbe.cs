using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>What RLIMIT_NPROC counts for a sandbox in a user namespace of its own, as this kernel behaves.</summary>
internal enum NprocScope
{
    /// <summary>Not probed yet, or the probe could not run.</summary>
    Unknown = 0,

    /// <summary>The processes of the sandbox's uid in its own user namespace only (Linux 5.14+, with the fixes through 5.19): a per-sandbox bound.</summary>
    Namespace,

    /// <summary>Every process of the uid on the host (before 5.14): the caller's own threads would count against the sandbox.</summary>
    HostUid,

    /// <summary>A low limit did not stop a fork at all.</summary>
    NotEnforced,
}

/// <summary>
/// Probes, once per process, how RLIMIT_NPROC counts in a new user namespace — the behaviour, not the kernel
/// version (ucounts moved the count into the user namespace in 5.14, and 5.15–5.19 fixed how it is compared).
/// Two throwaway sandboxes in a user namespace of their own, as the caller's uid when unprivileged (whose own
/// threads, dozens in a .NET process, are outside it) and as 65534 for root (host uid 0 is exempt), run the
/// library's init with RLIMIT_NPROC set and a program that does not exist: the init's fork of the program
/// succeeds (exec then fails with ENOENT) or is refused (EAGAIN, reported as <see cref="SetupStep.InitFork"/>).
/// With a limit of 1 the fork must be refused (the sandbox's own init counts); with 2 it must succeed, which
/// it does only when the caller's processes outside the namespace are not counted.
/// </summary>
internal static class NprocProbe
{
    private static readonly Lock s_lock = new();
    private static (NprocScope Scope, string Detail)? s_result;

    /// <summary>The probe's answer; runs it on first use (two short sandbox starts).</summary>
    public static (NprocScope Scope, string Detail) Result
    {
        get
        {
            lock (s_lock)
            {
                if (s_result is { } known)
                    return known;
                (NprocScope Scope, string Detail) result = Run();
                if (result.Scope != NprocScope.Unknown)
                    s_result = result; // an answer that could not be had is tried again next time
                return result;
            }
        }
    }

    private static (NprocScope, string) Run()
    {
        try
        {
            bool one = ForkSucceeds(1), two = ForkSucceeds(2);
            return (one, two) switch
            {
                (false, true) => (NprocScope.Namespace, "RLIMIT_NPROC counts the sandbox's own user namespace"),
                (false, false) => (NprocScope.HostUid, "RLIMIT_NPROC counts every process of the uid on the host (kernel before 5.14), so it cannot bound one sandbox"),
                _ => (NprocScope.NotEnforced, "RLIMIT_NPROC 1 did not stop a fork in a user namespace"),
            };
        }
        catch (Exception e) when (e is SandboxSetupException or InvalidOperationException or ArgumentException or PlatformNotSupportedException)
        {
            return (NprocScope.Unknown, "the RLIMIT_NPROC probe could not run: " + (e is SandboxSetupException s ? s.Step + " " : "") + e.Message);
        }
    }

    /// <summary>Whether the init of a sandbox with RLIMIT_NPROC <paramref name="limit"/> can fork its program.</summary>
    private static bool ForkSucceeds(ulong limit)
    {
        NamespaceBuilder b = new NamespaceBuilder().WithNamespaces(Namespaces.User);
        b = geteuid() == 0 ? b.MapUsers(0, 65534, 1).MapGroups(0, 65534, 1) : b.MapCurrentUserToRoot();
        IsolationSpec spec = b.WithInit()
            .WithRlimit(RlimitResource.Nproc, limit)
            .WithStandardInput(Stdio.Null).WithStandardOutput(Stdio.Null).WithStandardError(Stdio.Null)
            .Build();
        try
        {
            using IsolatedProcess unexpected = spec.Start("/nonexistent/isolation-nproc-probe");
            throw new InvalidOperationException("a program that does not exist started");
        }
        catch (SandboxSetupException e) when (e.Step == SetupStep.Exec && e.Errno == ENOENT)
        {
            return true;
        }
        catch (SandboxSetupException e) when (e.Step == SetupStep.InitFork && e.Errno == EAGAIN)
        {
            return false;
        }
    }
}
