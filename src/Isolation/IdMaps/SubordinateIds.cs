namespace Isolation.IdMaps;

/// <summary>/etc/subuid and /etc/subgid (subuid(5)): the ranges newuidmap/newgidmap let a user map.</summary>
internal static class SubordinateIds
{
    private static readonly string[] s_toolDirectories = ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"];

    public static string? FindTool(string name)
    {
        foreach (string dir in s_toolDirectories)
        {
            string path = Path.Combine(dir, name);
            if (File.Exists(path))
                return path;
        }
        return null;
    }

    /// <summary>Parses "name-or-uid:start:count" lines for the given user.</summary>
    public static List<IdMap> ReadRanges(string file, string? userName, uint id)
    {
        var ranges = new List<IdMap>();
        if (!File.Exists(file))
            return ranges;
        foreach (string raw in File.ReadLines(file))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line[0] == '#')
                continue;
            string[] parts = line.Split(':');
            if (parts.Length != 3 || !uint.TryParse(parts[1], out uint start) || !uint.TryParse(parts[2], out uint count))
                continue;
            if (parts[0] == userName || parts[0] == id.ToString(System.Globalization.CultureInfo.InvariantCulture))
                ranges.Add(new IdMap(0, start, count));
        }
        return ranges;
    }

    /// <summary>Throws an <see cref="ArgumentException"/> naming the missing tool or range.</summary>
    public static void Check(string kind, string tool, string file, IReadOnlyList<IdMap> maps, uint ownId)
    {
        if (FindTool(tool) is null)
            throw new ArgumentException($"This {kind} map has several ranges (or ids other than your own), which an unprivileged user can set only through {tool}; it is not installed. Install it (Debian: apt-get install uidmap) or map only your own {kind}.");
        string? user = Environment.UserName;
        List<IdMap> allowed = ReadRanges(file, user, ownId);
        foreach (IdMap m in maps)
        {
            if (m.Count == 1 && m.Outside == ownId)
                continue;
            bool covered = allowed.Any(r => m.Outside >= r.Outside && (ulong)m.Outside + m.Count <= (ulong)r.Outside + r.Count);
            if (!covered)
                throw new ArgumentException($"{kind} range {m.Outside}-{(ulong)m.Outside + m.Count - 1} is not delegated to user '{user}' in {file}; add a line such as '{user}:{m.Outside}:{m.Count}' (see subuid(5)).");
        }
    }
}
