namespace Isolation.Benchmarks.Infrastructure;

/// <summary>
/// N idle sandboxes alive at once: user + pid + mount with /proc and the library's init as PID 1, the
/// static no-op sleeping as the payload. Each holds one pidfd in the caller (mind the open-files limit).
/// </summary>
internal sealed class Fleet
{
    private readonly IsolationSpec _spec = new NamespaceBuilder()
        .WithNamespaces(Sandboxes.Core)
        .MapCurrentUserToRoot()
        .WithMounts(m => m.Proc("/proc"))
        .WithInit()
        .Build();

    private readonly List<IsolatedProcess> _alive = [];

    public IReadOnlyList<IsolatedProcess> Alive => _alive;

    /// <summary>Starts <paramref name="count"/> sandboxes; each returns once its init has exec'd.</summary>
    public void StartAll(int count)
    {
        string noop = Programs.Noop;
        for (int i = 0; i < count; i++)
            _alive.Add(_spec.Start(noop, "pause"));
    }

    /// <summary>Kills every sandbox first, then waits for and releases each.</summary>
    public void TearDownAll()
    {
        foreach (IsolatedProcess p in _alive)
            p.Kill();
        foreach (IsolatedProcess p in _alive)
            p.Dispose();
        _alive.Clear();
    }
}
