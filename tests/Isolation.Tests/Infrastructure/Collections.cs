namespace Isolation.Tests.Infrastructure;

/// <summary>Tests that count this process's descriptors and descendants run alone, so others' sandboxes don't blur the count.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class LeakChecks
{
    public const string Name = "Leak checks (run alone)";
}
