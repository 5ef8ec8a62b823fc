using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Isolation;

namespace Isolate;

/// <summary>
/// bwrap's diagnostics as bwrap prints them: <c>bwrap: </c> and the message on stderr, and with
/// <c>--level-prefix</c> a syslog level before it (<c>&lt;3&gt;</c> for errors, <c>&lt;4&gt;</c> for warnings), so
/// that scripts and journald read <c>isolate bwrap</c> as they read bwrap.
/// </summary>
internal static partial class BwrapMessages
{
    /// <summary>Set by <c>--level-prefix</c>: messages from then on carry their syslog level.</summary>
    public static bool LevelPrefix { get; set; }

    /// <summary>An error (LOG_ERR); bwrap exits with 1 after it.</summary>
    public static void Error(string message) => Write(3, message);

    /// <summary>A warning (LOG_WARNING), such as "Only the last --chdir option will take effect".</summary>
    public static void Warning(string message) => Write(4, message);

    /// <summary>
    /// A sandbox that failed to start, in bwrap's words: "Can't find source path /x: No such file or directory",
    /// "Can't make symlink at /a: existing destination is /b", "execvp /: Permission denied". The library's own
    /// message names its builder calls ("mount #3") and hints in its API's terms; on this face both give way to
    /// what the operation was on the command line. <paramref name="userNamespace"/>: the sandbox was to have one;
    /// <paramref name="hostPath"/> finds a sandbox path's host path, where a bind shows one.
    /// </summary>
    public static string SetupFailed(SandboxSetupException e, bool userNamespace, Func<string, string?> hostPath)
    {
        string error = Marshal.GetPInvokeErrorMessage(e.Errno);
        string what = e.Message;
        int end = e.Errno != 0 ? what.IndexOf($": {error} (", StringComparison.Ordinal) : -1;
        if (end >= 0)
            what = what[..end];
        what = MountNumber().Replace(what, "");
        if (e.Step == SetupStep.Exec && e.Path is { } program)
            return $"execvp {program}: {error}";
        if (e.Step == SetupStep.Clone)
        {
            return e.Errno switch
            {
                28 /* ENOSPC */ => "Creating new namespace failed: nesting depth or /proc/sys/user/max_*_namespaces exceeded (ENOSPC)",
                1 /* EPERM */ when userNamespace && geteuid() != 0 =>
                    "No permissions to create a new namespace, likely because the kernel does not allow non-privileged user namespaces.",
                _ => $"Creating new namespace failed: {error}",
            };
        }
        if (e.Step != SetupStep.Mount)
            return e.Errno != 0 ? $"{what}: {error}" : what;

        bool creatingTarget = what.EndsWith(" (creating the target)", StringComparison.Ordinal);
        if (Bind().Match(what) is { Success: true } bind)
        {
            string source = bind.Groups["source"].Value, target = bind.Groups["target"].Value;
            return creatingTarget ? $"Can't create mount point {target}: {error}"
                : e.Errno == 2 /* ENOENT */ ? $"Can't find source path {source}: {error}"
                : $"Can't bind mount {source} on {target}: {error}";
        }
        if (Symlink().Match(what) is { Success: true } symlink)
        {
            string path = symlink.Groups["path"].Value;
            string? existing = e.Errno == 17 /* EEXIST */ && hostPath(path) is { } host ? new FileInfo(host).LinkTarget : null;
            return existing is not null ? $"Can't make symlink at {path}: existing destination is {existing}" : $"Can't make symlink at {path}: {error}";
        }
        string operation = what.Replace(" (creating the target)", "", StringComparison.Ordinal);
        return operation switch
        {
            _ when operation.StartsWith("dir ", StringComparison.Ordinal) => $"Can't mkdir {operation[4..]}: {error}",
            _ when operation.StartsWith("file ", StringComparison.Ordinal) => $"Can't create file at {operation[5..]}: {error}",
            _ when operation.StartsWith("remount read-only ", StringComparison.Ordinal) => $"Can't remount readonly on {operation[18..]}: {error}",
            _ when operation.StartsWith("read-only ", StringComparison.Ordinal) => $"Can't make {operation[10..]} read-only: {error}",
            _ => $"Can't mount {operation}: {error}", // "tmpfs on /tmp", "proc on /proc", "overlay on /x (upper /u)"
        };
    }

    [GeneratedRegex(@"^mount #\d+: ")]
    private static partial Regex MountNumber();

    [GeneratedRegex(@"^(?:bind|ro-bind|dev-bind) (?<source>.+) on (?<target>[^ ]+)(?: \(.*\))?$")]
    private static partial Regex Bind();

    [GeneratedRegex(@"^symlink (?<path>.+) -> ")]
    private static partial Regex Symlink();

    [DllImport("libc")]
    private static extern uint geteuid();

    private static void Write(int level, string message) =>
        Console.Error.WriteLine((LevelPrefix ? $"<{level}>" : "") + "bwrap: " + message);
}
