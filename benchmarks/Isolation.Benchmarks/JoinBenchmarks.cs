using BenchmarkDotNet.Attributes;
using Isolation.Benchmarks.Infrastructure;

namespace Isolation.Benchmarks;

/// <summary>
/// What joining costs: start → exit of /bin/true joining a held network namespace (JoinNamespace: the helper forks a
/// trampoline that setns(2)s, and clones the sandbox from it) against the same spec creating a new network namespace
/// (the baseline; lo brought up), and against no namespace at all. The held namespace is a sleeping sandbox's own.
/// </summary>
[MemoryDiagnoser]
public class JoinBenchmarks
{
    private const string Program = "/bin/true";

    private IsolatedProcess _holder = null!;
    private IsolationSpec _holderSpec = null!;
    private IsolationSpec _new = null!;
    private IsolationSpec _joined = null!;
    private IsolationSpec _none = null!;

    [GlobalSetup]
    public void Setup()
    {
        _holderSpec = new NamespaceBuilder().WithNamespaces(Namespaces.Net).Build();
        _holder = _holderSpec.Start("/bin/sleep", "3600");
        _new = new NamespaceBuilder().WithNamespaces(Namespaces.Net).Build();
        _joined = new NamespaceBuilder().JoinNamespace(Namespaces.Net, $"/proc/{_holder.Id}/ns/net").Build();
        _none = Sandboxes.Spec(Config.None);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _joined.Dispose();
        _new.Dispose();
        _none.Dispose();
        _holder.Dispose(); // kills the sleep
        _holderSpec.Dispose();
    }

    [Benchmark(Baseline = true, Description = "new net namespace")]
    public void NewNet() => Sandboxes.RunToExit(_new, Program);

    [Benchmark(Description = "JoinNamespace(Net, held)")]
    public void JoinNet() => Sandboxes.RunToExit(_joined, Program);

    [Benchmark(Description = "no namespace")]
    public void NoNamespace() => Sandboxes.RunToExit(_none, Program);
}
