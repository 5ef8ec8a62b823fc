using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>
/// A join that cannot happen fails with the join (or the clone after it) named, and leaves nothing behind: no process, no
/// pipe, pidfd or namespace descriptor. Runs alone so that other tests' sandboxes do not blur the counts.
/// </summary>
[Collection(LeakChecks.Name)]
public sealed class JoinFailureTests
{
    [Fact]
    public void Joining_a_pid_namespace_whose_holder_died_before_start_says_its_init_has_exited()
    {
        Host.RequireRoot();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: false, "--pid");
        string path = holder.Path("pid");
        IsolationSpec spec = new NamespaceBuilder().JoinNamespace(Namespaces.Pid, path).Build();
        holder.Kill();

        var e = SetupFailureTests.FailsCleanly(spec, "/bin/true");

        Assert.Equal(SetupStep.Clone, e.Step);
        Assert.Equal("ENOMEM", e.ErrnoName);
        Assert.Equal(path, e.Path);
        Assert.Contains($"in the PID namespace of '{path}'", e.Message);
        Assert.Contains("init (its PID 1) has exited", e.Hint);
    }

    [Fact]
    public void Joining_the_user_namespace_a_process_is_already_in_fails_at_the_join_with_einval()
    {
        Host.RequireRoot();
        IsolationSpec spec = new NamespaceBuilder().JoinNamespace(Namespaces.User, "/proc/self/ns/user").Build();

        var e = SetupFailureTests.FailsCleanly(spec, "/bin/true");

        Assert.Equal(SetupStep.JoinNamespace, e.Step);
        Assert.Equal("EINVAL", e.ErrnoName);
        Assert.Equal("/proc/self/ns/user", e.Path);
        Assert.Contains("join the user namespace of '/proc/self/ns/user' (JoinNamespace(Namespaces.User, ...))", e.Message);
    }

    [Fact]
    public void A_build_refused_for_a_wrong_kind_leaves_no_descriptor_open()
    {
        string[] before = Descriptors();
        for (int i = 0; i < 20; i++)
        {
            Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
                .JoinNamespace(Namespaces.Net, "/proc/self/ns/net")
                .JoinNamespace(Namespaces.Uts, "/proc/self/ns/ipc")
                .Build());
        }
        Assert.Empty(Descriptors().Except(before));
    }

    /// <summary>
    /// What a start or a build could leak, as "fd -> target": what <see cref="SetupFailureTests.SpawnDescriptors"/> counts
    /// (pipes, pidfds, memfds) and namespace files ("net:[4026...]").
    /// </summary>
    private static string[] Descriptors() =>
    [
        .. SetupFailureTests.SpawnDescriptors(),
        .. Directory.GetFiles("/proc/self/fd")
            .Select(f => $"{Path.GetFileName(f)} -> {SetupFailureTests.TryReadLink(f)}")
            .Where(d => d.EndsWith(']') && d.Contains(":[", StringComparison.Ordinal) && !d.Contains("pidfd", StringComparison.Ordinal)),
    ];
}
