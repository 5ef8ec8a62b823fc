using System.Globalization;

namespace Isolation.IdMaps;

/// <summary>
/// Blocks of host ids for sandboxes a root caller starts, one block per sandbox composition, so that its
/// programs never share an id with host daemons (65534 is <c>nobody</c> to them) or with other sandboxes, as
/// podman's <c>--userns=auto</c> does. Blocks come from root's ranges in /etc/subuid and /etc/subgid, or,
/// where root has none, from <see cref="DefaultPoolStart"/> up (above what <c>useradd</c> hands out,
/// SUB_UID_MAX 600100000). A block is held by an exclusive <c>flock</c> on the file named after its first id in
/// <see cref="Directory"/>, taken by the allocating process for its lifetime: the kernel releases it when
/// that process dies, however it dies, so no record can go stale.
/// </summary>
internal static class IdBlocks
{
    /// <summary>Ids in one block: 0..65535 inside, as a container image expects.</summary>
    public const uint Size = 65536;

    /// <summary>The first host id of the default pool (2^30), used where /etc/subuid has no range for root.</summary>
    public const uint DefaultPoolStart = 1u << 30;

    /// <summary>Blocks in the default pool (2^30 ids).</summary>
    public const uint DefaultPoolBlocks = 16384;

    /// <summary>Where the lock files of blocks live.</summary>
    public const string Directory = "/run/isolation/id-blocks";

    private static readonly List<FileStream> s_held = []; // open for the process's lifetime: the locks

    /// <summary>
    /// Takes a free block for this process (held until it exits) and returns its first host id, the same
    /// for uids and gids. Throws <see cref="InvalidOperationException"/> when every block is held.
    /// </summary>
    public static uint Allocate()
    {
        List<uint> starts = [.. Pool()];
        System.IO.Directory.CreateDirectory(Directory);
        // Start at a random block, so that processes allocating at once rarely try the same ones.
        int first = Random.Shared.Next(starts.Count);
        for (int i = 0; i < starts.Count; i++)
        {
            uint start = starts[(first + i) % starts.Count];
            string path = Path.Combine(Directory, start.ToString(CultureInfo.InvariantCulture));
            try
            {
                // FileShare.None: .NET takes flock(LOCK_EX | LOCK_NB) and fails when another process holds it.
                var lockFile = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
                lock (s_held)
                    s_held.Add(lockFile);
                return start;
            }
            catch (IOException)
            {
                // held by a live process (or by this one, for another sandbox)
            }
        }
        throw new InvalidOperationException($"Every block of {Size} host ids is held by a running process ({Directory}); add a larger range for root to /etc/subuid and /etc/subgid (subuid(5)).");
    }

    /// <summary>The first id of every block: root's ranges present in both /etc/subuid and /etc/subgid, else the default pool.</summary>
    private static IEnumerable<uint> Pool()
    {
        List<IdMap> uids = SubordinateIds.ReadRanges("/etc/subuid", "root", 0);
        List<IdMap> gids = SubordinateIds.ReadRanges("/etc/subgid", "root", 0);
        List<(uint Start, uint Count)> ranges = [.. uids.Where(u => u.Count >= Size && gids.Any(g => g.Outside == u.Outside && g.Count >= u.Count))
            .Select(u => (u.Outside, u.Count))];
        if (ranges.Count == 0)
            ranges.Add((DefaultPoolStart, DefaultPoolBlocks * Size));
        foreach ((uint start, uint count) in ranges)
        {
            for (uint offset = 0; offset + Size <= count; offset += Size)
                yield return start + offset;
        }
    }
}
