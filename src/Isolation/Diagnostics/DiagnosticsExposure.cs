using Isolation.IdMaps;
using Isolation.Mounts;
using Microsoft.Extensions.Logging;
using static Tmds.Linux.LibC;

namespace Isolation.Diagnostics;

/// <summary>
/// The caller's .NET diagnostics socket (<c>$TMPDIR/dotnet-diagnostic-PID-...-socket</c>, mode 0600) accepts
/// anyone with the caller's kernel uid: a sandbox that runs as that uid and sees that directory can make the
/// caller load a library of its choosing or dump its memory. <see cref="Warn"/> says so at <c>Build()</c>.
/// </summary>
internal static class DiagnosticsExposure
{
    /// <summary>Logs a warning when <paramref name="s"/> (identity already resolved) is exposed.</summary>
    public static void Warn(BuilderState s, ILogger logger)
    {
        if (Environment.GetEnvironmentVariable("DOTNET_EnableDiagnostics") == "0" || !logger.IsEnabled(LogLevel.Warning))
            return;
        uint own = geteuid();
        if (HostUid(s, own) != own)
            return;
        string tmp = Path.GetTempPath().TrimEnd('/');
        if (tmp.Length == 0 || !SeesHostPath(s, tmp))
            return;
        Log.DiagnosticsSocketExposed(logger, own, tmp, Environment.ProcessId);
    }

    /// <summary>The host uid the program runs as.</summary>
    private static uint HostUid(BuilderState s, uint own)
    {
        if (!s.Namespaces.HasFlag(Namespaces.User))
            return s.Uid ?? own;
        if (s.Uid is not { } inside || inside == MappedIdentity.Unchanged)
            return own;
        foreach (IdMap m in s.UidMaps)
        {
            if (inside >= m.Inside && (ulong)inside < (ulong)m.Inside + m.Count)
                return m.Outside + (inside - m.Inside);
        }
        return own;
    }

    /// <summary>Whether host <paramref name="path"/> is visible in the sandbox: no new root and nothing mounted over it, or bound in below a new root.</summary>
    private static bool SeesHostPath(BuilderState s, string path)
    {
        static bool Covers(string? dir, string p) => dir is not null && (dir == "/" || p == dir.TrimEnd('/') || p.StartsWith(dir.TrimEnd('/') + "/", StringComparison.Ordinal));
        if (!s.Namespaces.HasFlag(Namespaces.Mount) || s.Root is null)
            return !s.Mounts.Any(op => op.Kind is NativeOpKind.Mount or NativeOpKind.Mask && Covers(op.Target, path));
        return s.Mounts.Any(op => op.Kind == NativeOpKind.Bind && !op.SourceInsideRoot && Covers(op.Source, path));
    }
}
