using System.Collections.Concurrent;
using System.Diagnostics;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Integration;

/// <summary>
/// IsolationSpec.Dispose: the descriptors of joined namespaces are closed and the spawn helper forgets the spec at once,
/// not when the spec is collected; starts in flight complete, later ones throw. Run alone: they count this process's
/// descriptors and the helper's mappings.
/// </summary>
[Collection(LeakChecks.Name)]
public sealed class SpecLifetimeTests
{
    [Fact]
    public async Task Dispose_closes_the_descriptors_of_the_joined_namespaces_and_a_later_start_throws()
    {
        Host.RequireRoot();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: false, "--net", "--uts");
        await OutputOf(new NamespaceBuilder().WithStandardOutput(Stdio.Pipe).Build(), "/bin/true"); // the helper is up before the count
        string[] before = OwnFds();
        IsolationSpec spec = new NamespaceBuilder()
            .JoinNamespace(Namespaces.Net, holder.Path("net"))
            .JoinNamespace(Namespaces.Uts, holder.Path("uts"))
            .WithStandardOutput(Stdio.Pipe)
            .Build();
        Assert.Equal(2, DescriptorsOf(holder, "net", "uts"));
        Assert.Equal(2, OwnFds().Except(before).Count());
        Assert.Equal(holder.Namespace("net"), await OutputOf(spec, "/bin/readlink", "/proc/self/ns/net"));

        spec.Dispose();

        Assert.Equal(0, DescriptorsOf(holder, "net", "uts"));
        Assert.Empty(OwnFds().Except(before)); // others may close meanwhile (an exit watcher closes an earlier pidfd), none is new
        var e = Assert.Throws<ObjectDisposedException>(() => spec.Start("/bin/true"));
        Assert.Contains(nameof(IsolationSpec), e.ObjectName);
        spec.Dispose(); // a second time does nothing
        Assert.Empty(OwnFds().Except(before));
    }

    [Fact]
    public async Task Dispose_makes_the_spawn_helper_drop_its_copy_of_the_spec()
    {
        Host.RequireRoot();
        await OutputOf(new NamespaceBuilder().WithStandardOutput(Stdio.Pipe).Build(), "/bin/true");
        HashSet<string> before = HelperSpecMappings();
        IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.Uts).WithHostname("lifetime").WithStandardOutput(Stdio.Pipe).Build();
        Assert.Equal("lifetime", await OutputOf(spec, "/bin/hostname"));
        string[] defined = [.. HelperSpecMappings().Except(before)];
        Assert.Single(defined); // the helper maps the spec's memfd (by its inode) once it is defined

        spec.Dispose();

        var clock = Stopwatch.StartNew(); // the helper reads the forget message on its own loop
        while (HelperSpecMappings().Contains(defined[0]) && clock.Elapsed < TimeSpan.FromSeconds(5))
            await Task.Delay(10);
        Assert.DoesNotContain(defined[0], HelperSpecMappings());
        GC.KeepAlive(spec); // not collected: it was Dispose, not the finalizer, that made the helper forget it
    }

    [Fact]
    public async Task Starts_in_flight_when_the_spec_is_disposed_complete_and_later_ones_throw()
    {
        Host.RequireRoot();
        using NamespaceHolder holder = NamespaceHolder.Start(asNobody: false, "--net");
        for (int round = 0; round < 5; round++)
        {
            IsolationSpec spec = new NamespaceBuilder().JoinNamespace(Namespaces.Net, holder.Path("net")).WithStandardOutput(Stdio.Pipe).Build();
            var started = new ConcurrentQueue<IsolatedProcess>();
            using var first = new SemaphoreSlim(0);
            Task[] loops = [.. Enumerable.Range(0, 2).Select(_ => Task.Run(() =>
            {
                while (true)
                {
                    try
                    {
                        started.Enqueue(spec.Start("/bin/readlink", "/proc/self/ns/net"));
                        first.Release();
                    }
                    catch (ObjectDisposedException)
                    {
                        return;
                    }
                }
            }))];
            await first.WaitAsync(TestContext.Current.CancellationToken);

            spec.Dispose();

            await Task.WhenAll(loops); // every start either ran or threw ObjectDisposedException, nothing else
            Assert.NotEmpty(started);
            foreach (IsolatedProcess p in started)
            {
                await using (p)
                {
                    string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
                    Assert.True((await p.WaitForExitAsync()).Success);
                    Assert.Equal(holder.Namespace("net"), output.Trim());
                }
            }
        }
    }

    /// <summary>This process's descriptors that name one of <paramref name="holder"/>'s namespaces.</summary>
    private static int DescriptorsOf(NamespaceHolder holder, params string[] names)
    {
        string[] targets = [.. names.Select(holder.Namespace)];
        return Directory.GetFiles("/proc/self/fd").Count(f => new FileInfo(f).LinkTarget is { } t && targets.Contains(t));
    }

    /// <summary>This process's descriptors as "fd -> target", without the pidfds of spawn helpers (one per helper, for the helper's lifetime).</summary>
    private static string[] OwnFds() =>
        [.. Host.OpenFds().Where(fd => !Host.IsSpawnHelperPidfd(fd.ToString()))
            .Select(fd => $"{fd} -> {SetupFailureTests.TryReadLink($"/proc/self/fd/{fd}")}")];

    /// <summary>The specs the spawn helpers of this process hold: the inodes of their mapped memfds.</summary>
    private static HashSet<string> HelperSpecMappings() =>
        [.. Host.Descendants().Where(Host.IsSpawnHelper)
            .SelectMany(pid => File.ReadLines($"/proc/{pid}/maps"))
            .Where(l => l.Contains("/memfd:isolation-spec", StringComparison.Ordinal))
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[4])];

    private static async Task<string> OutputOf(IsolationSpec spec, string program, params string[] arguments)
    {
        await using IsolatedProcess p = spec.Start(program, arguments);
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        ExitStatus status = await p.WaitForExitAsync();
        Assert.True(status.Success, $"{program}: {status}");
        return output.Trim();
    }
}
