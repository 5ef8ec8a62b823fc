using System.Runtime.InteropServices;
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
    /// "Can't make symlink at /a: existing destination is /b", "execvp /: Permission denied". Told from the
    /// exception's data (step, errno, path, the mount call it names and whether it was creating the target) and
    /// what that call was on the command line (<paramref name="calls"/>), not from its message, which names the
    /// library's builder calls ("mount #3") and hints in its API's terms. <paramref name="userNamespace"/>: the
    /// sandbox was to have one; <paramref name="hostPath"/> finds a sandbox path's host path, where a bind shows one.
    /// </summary>
    public static string SetupFailed(SandboxSetupException e, bool userNamespace, BwrapMountCalls calls, Func<string, string?> hostPath)
    {
        string error = Marshal.GetPInvokeErrorMessage(e.Errno);
        switch (e.Step)
        {
            case SetupStep.Exec when e.Path is { } program:
                return $"execvp {program}: {error}";
            case SetupStep.Clone:
                return e.Errno switch
                {
                    28 /* ENOSPC */ => "Creating new namespace failed: nesting depth or /proc/sys/user/max_*_namespaces exceeded (ENOSPC)",
                    1 /* EPERM */ when userNamespace && geteuid() != 0 =>
                        "No permissions to create a new namespace, likely because the kernel does not allow non-privileged user namespaces.",
                    _ => $"Creating new namespace failed: {error}",
                };
            case SetupStep.Mount when calls.Find(e.MountIndex) is { } call:
                // A symlink where another one is: bwrap names what that one points to instead of the errno.
                if (call.Kind == BwrapMountKind.Symlink && e.Errno == 17 /* EEXIST */ && hostPath(call.Dest) is { } host && new FileInfo(host).LinkTarget is { } existing)
                    return $"Can't make symlink at {call.Dest}: existing destination is {existing}";
                return $"{MountFailed(call, e)}: {error}";
            default:
                return e.Errno != 0 ? $"{e.What}: {error}" : e.Message;
        }
    }

    /// <summary>bwrap's words for a failed mount call, before the errno's text.</summary>
    private static string MountFailed(BwrapMountCall call, SandboxSetupException e)
    {
        string path = e.Path ?? call.Dest;
        switch (call.Kind)
        {
            case BwrapMountKind.Bind:
                return e.CreatingTarget ? $"Can't create mount point {call.Dest}"
                    : e.Errno == 2 /* ENOENT */ ? $"Can't find source path {call.Source}"
                    : $"Can't bind mount {call.Source} on {call.Dest}";
            case BwrapMountKind.Symlink:
                return $"Can't make symlink at {call.Dest}";
            case BwrapMountKind.Mount:
                return $"Can't mount {call.Source} on {call.Dest}";
            case BwrapMountKind.Dev:
                // bwrap's --dev: a tmpfs, its device nodes bound from the host, devpts, a tmpfs on shm, and links.
                string node = path.StartsWith(call.Dest.TrimEnd('/') + "/", StringComparison.Ordinal) ? path[(call.Dest.TrimEnd('/').Length + 1)..] : "";
                return node switch
                {
                    "" => $"Can't mount tmpfs on {path}",
                    "pts" => $"Can't mount devpts on {path}",
                    "shm" => $"Can't mount tmpfs on {path}",
                    "null" or "zero" or "full" or "random" or "urandom" or "tty" => e.CreatingTarget ? $"Can't create file at {path}" : $"Can't bind mount /dev/{node} on {path}",
                    _ => $"Can't create symlink {path}",
                };
            case BwrapMountKind.Dir:
                return $"Can't mkdir {call.Dest}";
            case BwrapMountKind.File:
                return $"Can't create file at {call.Dest}";
            case BwrapMountKind.Chmod:
                return $"Can't chmod 0{Convert.ToString(call.Mode, 8)} {call.Dest}";
            case BwrapMountKind.RemountReadOnly:
                return $"Can't remount readonly on {call.Dest}";
            case BwrapMountKind.Overlay:
                return $"Can't make overlay mount on {call.Dest}";
            case BwrapMountKind.ReadOnly:
                return $"Can't make {path} read-only";
            default:
                return $"Can't mask {path}";
        }
    }

    [DllImport("libc")]
    private static extern uint geteuid();

    private static void Write(int level, string message) =>
        Console.Error.WriteLine((LevelPrefix ? $"<{level}>" : "") + "bwrap: " + message);
}
