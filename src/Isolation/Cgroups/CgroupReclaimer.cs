using System.Text;
using static Isolation.Interop.Interop;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Isolation.Cgroups;

/// <summary>
/// Reclaims the cgroups of owners that died without removing them (DESIGN.md §3a): for each lock file in the
/// store that nobody holds, the cgroups named with its token in the directories it recorded are killed
/// (cgroup.kill, or the v1 freeze/SIGKILL/thaw) and removed, then the lock file. A held lock is a live owner
/// and is never touched; a cgroup without an owner file here (a detached sandbox, another user's, another
/// program's) is never seen. Paths are parameters so the file logic runs against a temp directory in tests.
/// </summary>
internal static class CgroupReclaimer
{
    /// <param name="store">The directory of lock files (<see cref="CgroupOwner.DefaultStore"/>).</param>
    /// <param name="layout">The cgroup hierarchies: a recorded directory outside them is not ours to touch.</param>
    /// <param name="ownToken">This process's token, skipped.</param>
    public static CgroupReclaimResult Reclaim(string? store, CgroupLayout layout, string? ownToken)
    {
        var result = new Tally();
        if (store is null || !Directory.Exists(store))
            return result.ToResult();
        foreach (string path in Directory.GetFiles(store))
        {
            string file = Path.GetFileName(path);
            if (file.StartsWith('.') && file.EndsWith(".new", StringComparison.Ordinal))
            {
                // A lock file whose owner died while creating it: it recorded nothing yet.
                WithLockOf(path, () => unlink_path(path));
                continue;
            }
            string token = file.EndsWith(CgroupOwner.LockSuffix, StringComparison.Ordinal) ? file[..^CgroupOwner.LockSuffix.Length] : "";
            if (!CgroupOwner.IsToken(token) || token == ownToken)
                continue;
            bool locked = WithLockOf(path, () =>
            {
                result.DeadOwners++;
                if (ReclaimOwner(CgroupFiles.TryRead(path) ?? "", token, layout, result))
                    unlink_path(path);
            });
            if (!locked)
                result.LiveOwners++;
        }
        return result.ToResult();
    }

    /// <summary>Runs <paramref name="action"/> holding the lock of <paramref name="path"/>; false when another process holds it (or the file is gone).</summary>
    private static unsafe bool WithLockOf(string path, Action action)
    {
        int fd = open_path(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
        if (fd < 0)
            return false;
        try
        {
            if (flock(fd, LOCK_EX | LOCK_NB) != 0)
                return false;
            // Another reclaimer may have finished and unlinked it between our open and flock.
            stat st;
            if (fstat(fd, &st) != 0 || st.st_nlink == 0)
                return true;
            action();
            return true;
        }
        finally
        {
            close(fd); // drops the lock
        }
    }

    /// <summary>Reclaims one dead owner's cgroups; true when nothing of it is left, so its lock file can go.</summary>
    internal static bool ReclaimOwner(string lockFileText, string token, CgroupLayout layout, Tally result)
    {
        string[] lines = lockFileText.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        if (lines.Length == 0 || lines[0] != CgroupOwner.Header)
            return false; // a format this version does not know: leave it to the version that wrote it
        bool complete = true;
        var leftovers = new Dictionary<string, List<(string Dir, string Mount, V1Hierarchy? V1)>>(StringComparer.Ordinal);
        foreach (string line in lines.Skip(1))
        {
            if (!line.StartsWith(CgroupOwner.ParentLine, StringComparison.Ordinal))
            {
                complete = false; // a kind of leftover this version does not know
                continue;
            }
            string parent = line[CgroupOwner.ParentLine.Length..];
            if (!Directory.Exists(parent))
                continue;
            if (Locate(layout, parent) is not { } where)
            {
                complete = false; // not in a hierarchy we see (another mount namespace's view): keep the marker
                continue;
            }
            string[] found;
            try
            {
                found = Directory.GetDirectories(parent, "isolation-*-" + token);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                result.Failures.Add($"list {parent} for the cgroups of dead owner {token}: {e.Message}");
                complete = false;
                continue;
            }
            foreach (string dir in found)
            {
                string name = Path.GetFileName(dir);
                if (!CgroupOwner.IsCgroupName(name, token))
                    continue;
                if (!leftovers.TryGetValue(name, out var dirs))
                    leftovers[name] = dirs = [];
                dirs.Add((dir, where.Mount, where.V1));
            }
        }
        foreach ((string name, var dirs) in leftovers)
        {
            ICgroup cgroup = Compose(dirs);
            result.KilledProcesses += dirs.SelectMany(d => CgroupFiles.ReadProcs(d.Dir)).Distinct().Count();
            cgroup.Kill();
            foreach (var d in dirs)
                RemoveDescendants(d.Dir);
            if (cgroup.Remove())
                result.Removed.AddRange(dirs.Select(d => d.Dir));
            else
            {
                complete = false;
                string[] still = [.. dirs.Where(d => Directory.Exists(d.Dir)).Select(d => $"{d.Dir} (pids {string.Join(' ', CgroupFiles.ReadProcs(d.Dir))})")];
                result.Failures.Add($"cgroup {name} of dead owner {token}: still there after kill and 5 s of rmdir: {string.Join(", ", still)}");
            }
        }
        return complete;
    }

    /// <summary>The hierarchy <paramref name="dir"/> is in: its mount point, and the v1 hierarchy or null for v2.</summary>
    private static (string Mount, V1Hierarchy? V1)? Locate(CgroupLayout layout, string dir)
    {
        if (dir.Split('/').Contains(".."))
            return null;
        static bool Under(string d, string mount) => d == mount || d.StartsWith(mount.TrimEnd('/') + "/", StringComparison.Ordinal);
        if (layout.V2MountPoint is { } v2 && Under(dir, v2))
            return (v2, null);
        foreach (V1Hierarchy h in layout.V1.Values.Distinct())
        {
            if (Under(dir, h.MountPoint))
                return (h.MountPoint, h);
        }
        return null;
    }

    /// <summary>One sandbox's directories as the driver that made them would hold them: v2, v1 or both.</summary>
    private static ICgroup Compose(List<(string Dir, string Mount, V1Hierarchy? V1)> dirs)
    {
        static bool InDefaultParent(string dir, string mount) => Path.GetDirectoryName(dir) == Path.Join(mount, CgroupDriver.DefaultParent);
        V2Cgroup? v2 = dirs.Where(d => d.V1 is null).Select(d => new V2Cgroup(d.Dir, []) { OwnsParent = InDefaultParent(d.Dir, d.Mount) }).FirstOrDefault();
        V1Cgroup? v1 = null;
        foreach (var d in dirs.Where(d => d.V1 is not null))
        {
            v1 ??= new V1Cgroup();
            v1.Add(d.V1!.Controllers, d.Dir, InDefaultParent(d.Dir, d.Mount));
        }
        return (v2, v1) switch
        {
            ({ } a, { } b) => new HybridCgroup(a, b),
            ({ } a, null) => a,
            (null, { } b) => b,
            _ => NoCgroup.Instance,
        };
    }

    /// <summary>Cgroups a sandbox made inside its own (it may, with a cgroup namespace and write access): killed and removed, deepest first.</summary>
    private static void RemoveDescendants(string dir)
    {
        foreach (string child in Directory.Exists(dir) ? Directory.GetDirectories(dir) : [])
        {
            RemoveDescendants(child);
            void KillAll()
            {
                foreach (int pid in CgroupFiles.ReadProcs(child))
                    kill(pid, SIGKILL);
            }
            KillAll();
            CgroupDriver.WaitEmpty(child, KillAll);
            CgroupFiles.RemoveDirectory(child, TimeSpan.FromSeconds(5));
        }
    }

    /// <summary>What a reclaim found and did, as it goes.</summary>
    internal sealed class Tally
    {
        public List<string> Removed { get; } = [];
        public List<string> Failures { get; } = [];
        public int KilledProcesses { get; set; }
        public int DeadOwners { get; set; }
        public int LiveOwners { get; set; }

        public CgroupReclaimResult ToResult() => new()
        {
            RemovedDirectories = [.. Removed],
            Failures = [.. Failures],
            KilledProcesses = KilledProcesses,
            DeadOwners = DeadOwners,
            LiveOwners = LiveOwners,
        };
    }
}
