using Isolation.Spawning;

namespace Isolation;

/// <summary>
/// The spec's lifetime: what it holds outside this process's memory (the descriptors of the namespaces it joins, its
/// copy in each spawn helper) is released by <see cref="Dispose"/>, or when the spec is garbage-collected.
/// </summary>
public sealed partial class IsolationSpec : IDisposable
{
    private int _holds = 1; // the spec's own, until Dispose, and one per start in flight: the last one out releases
    private int _disposed;

    /// <summary>
    /// Releases what the spec holds outside this process's memory: the descriptors of the namespaces it joins
    /// (<see cref="NamespaceBuilder.JoinNamespace(Namespaces, string)"/>), and its copy in the spawn helper. Sandboxes
    /// already started are not affected, and a start in flight on another thread completes first; a later
    /// <see cref="Start(string, ReadOnlySpan{string})"/> throws <see cref="ObjectDisposedException"/>. Without it, both are
    /// released when the spec is garbage-collected. Safe to call more than once.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
            ReleaseHold();
    }

    /// <summary>A start holds the spec until it has returned or thrown; throws <see cref="ObjectDisposedException"/> once disposed.</summary>
    private InFlightStart EnterStart()
    {
        while (true)
        {
            int holds = Volatile.Read(ref _holds);
            ObjectDisposedException.ThrowIf(holds == 0 || Volatile.Read(ref _disposed) != 0, this);
            if (Interlocked.CompareExchange(ref _holds, holds + 1, holds) == holds)
                return new InFlightStart(this);
        }
    }

    private void ReleaseHold()
    {
        if (Interlocked.Decrement(ref _holds) != 0)
            return;
        // Nothing starts from here on: no start reads the joins or defines the spec in a helper concurrently.
        _joins?.Dispose();
        foreach (SpawnHelper.Definition d in Interlocked.Exchange(ref _definitions, []))
            d.Forget();
    }

    /// <summary>One start's hold on the spec (<c>using</c> in StartCore).</summary>
    private ref struct InFlightStart(IsolationSpec spec)
    {
        private IsolationSpec? _spec = spec;

        public void Dispose()
        {
            _spec?.ReleaseHold();
            _spec = null;
        }
    }
}
