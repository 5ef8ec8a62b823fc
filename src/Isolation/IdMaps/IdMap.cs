namespace Isolation.IdMaps;

/// <summary>
/// One line of a uid or gid map (user_namespaces(7)): ids <see cref="Inside"/> ..
/// <see cref="Inside"/>+<see cref="Count"/>-1 in the sandbox are <see cref="Outside"/>.. on the host.
/// </summary>
/// <param name="Inside">First id inside the user namespace.</param>
/// <param name="Outside">First id in the parent user namespace.</param>
/// <param name="Count">Number of ids in the range.</param>
public readonly record struct IdMap(uint Inside, uint Outside, uint Count)
{
    /// <summary>The line as the kernel reads it from <c>/proc/PID/uid_map</c>.</summary>
    public override string ToString() => $"{Inside} {Outside} {Count}";

    /// <summary>Checks a map for the kernel's rules, throwing an <see cref="ArgumentException"/> that says what to fix.</summary>
    internal static void Validate(IReadOnlyList<IdMap> maps, string kind)
    {
        if (maps.Count > 340)
            throw new ArgumentException($"A {kind} map can have at most 340 lines; this one has {maps.Count}.");
        for (int i = 0; i < maps.Count; i++)
        {
            IdMap m = maps[i];
            if (m.Count == 0)
                throw new ArgumentException($"{kind} map line '{m}' has a count of 0; give each range at least one id.");
            if ((ulong)m.Inside + m.Count > uint.MaxValue || (ulong)m.Outside + m.Count > uint.MaxValue)
                throw new ArgumentException($"{kind} map line '{m}' runs past id 4294967294; shorten the range.");
            for (int j = 0; j < i; j++)
            {
                IdMap o = maps[j];
                if (Overlaps(m.Inside, m.Count, o.Inside, o.Count))
                    throw new ArgumentException($"{kind} map lines '{o}' and '{m}' overlap inside the namespace; each inside id may be mapped once.");
                if (Overlaps(m.Outside, m.Count, o.Outside, o.Count))
                    throw new ArgumentException($"{kind} map lines '{o}' and '{m}' overlap outside the namespace; each host id may be mapped once.");
            }
        }
    }

    private static bool Overlaps(uint a, uint aCount, uint b, uint bCount) =>
        (ulong)a < (ulong)b + bCount && (ulong)b < (ulong)a + aCount;

    /// <summary>The map's text as written to <c>/proc/PID/uid_map</c>.</summary>
    internal static string ToText(IReadOnlyList<IdMap> maps) => string.Concat(maps.Select(m => m + "\n"));
}

/// <summary>How the sandbox's <c>/proc/PID/setgroups</c> is set (user_namespaces(7)).</summary>
public enum SetgroupsPolicy
{
    /// <summary>"deny" when an unprivileged caller writes the gid map itself (the kernel requires it), else leave "allow".</summary>
    Auto,

    /// <summary>Always write "deny": the sandbox can never call setgroups(2) (drops no group it already has).</summary>
    Deny,

    /// <summary>Leave "allow": needs a privileged caller or newgidmap.</summary>
    Allow,
}
