using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Isolation.Interop;
using static Isolation.Interop.Interop;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace Isolation.Cgroups;

/// <summary>
/// The ownership marker of DESIGN.md §3a for cgroups: a lock file per owning process that it holds with
/// flock(2) for as long as it lives, and a token that names both the lock file and every cgroup the process
/// creates. The kernel drops the lock when the process dies, however it dies, so "is the owner alive" is one
/// non-blocking flock and never a pid that may have been reused.
/// <para>
/// Layout (see <see cref="IsolationCgroups"/>): <c>{store}/{token}.lock</c>, where the store is
/// <c>/run/isolation/owners</c> for root, else <c>$XDG_RUNTIME_DIR/isolation/owners</c>, else
/// <c>/tmp/isolation-{uid}/owners</c>; each a directory of the user's own, not writable by others. The file's
/// first line is <c>isolation-owner 1</c>; then one <c>cgroup-parent {directory}</c> line per directory the
/// process creates cgroups in, written before the first mkdir there. Its cgroups are named
/// <c>isolation-{pid}-{n}-{token}</c> in those directories, in every hierarchy.
/// </para>
/// </summary>
internal sealed class CgroupOwner
{
    public const string Header = "isolation-owner 1";
    public const string ParentLine = "cgroup-parent ";
    public const string LockSuffix = ".lock";
    private const string NewSuffix = ".new";

    private static readonly Lazy<CgroupOwner> s_current = new(() => Acquire(DefaultStore()));

    private readonly Lock _lock = new();
    private readonly HashSet<string> _recorded = new(StringComparer.Ordinal);
    private readonly int _fd;

    private CgroupOwner(string token, int fd, string? lockPath, string? error)
    {
        Token = token;
        _fd = fd;
        LockPath = lockPath;
        Error = error;
    }

    /// <summary>This process as an owner: its token, and its lock once it could take one.</summary>
    public static CgroupOwner Current => s_current.Value;

    /// <summary>This process's token if it has become an owner (created a cgroup), else null.</summary>
    public static string? CurrentToken => s_current.IsValueCreated ? s_current.Value.Token : null;

    /// <summary>16 hex digits, random per process: in the lock file's name and at the end of each cgroup's name.</summary>
    public string Token { get; }

    /// <summary>The lock file this process holds, or null when it has none (no usable store): its cgroups are then never reclaimed.</summary>
    public string? LockPath { get; }

    /// <summary>Why there is no lock file, or null.</summary>
    public string? Error { get; }

    /// <summary>Whether <paramref name="name"/> is a cgroup name of the owner with <paramref name="token"/>: isolation-{pid}-{n}-{token}.</summary>
    public static bool IsCgroupName(string name, string token)
    {
        if (!name.StartsWith("isolation-", StringComparison.Ordinal) || !name.EndsWith("-" + token, StringComparison.Ordinal))
            return false;
        string[] middle = name["isolation-".Length..^(token.Length + 1)].Split('-');
        return middle.Length == 2 && middle.All(p => p.Length > 0 && p.All(char.IsAsciiDigit));
    }

    /// <summary>Whether <paramref name="token"/> looks like a token (so a file name can be trusted to be one).</summary>
    public static bool IsToken(string token) => token.Length == 16 && token.All(char.IsAsciiHexDigitLower);

    /// <summary>
    /// Where this user's lock files live, created 0700 when missing; null when none is usable (a directory that
    /// is not ours, or writable by others, is never used: anyone who can write there could forge an owner).
    /// </summary>
    public static string? DefaultStore()
    {
        uint uid = geteuid();
        if (uid == 0)
            return UsableStore("/run", "isolation", uid);
        if (Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") is { Length: > 1 } runtime && runtime[0] == '/'
            && UsableStore(runtime, "isolation", uid) is { } store)
            return store;
        return UsableStore("/tmp", $"isolation-{uid}", uid);
    }

    /// <summary>{baseDir}/{name}/owners, made (0700) where missing, when each level we made or found is ours alone.</summary>
    internal static string? UsableStore(string baseDir, string name, uint uid)
    {
        if (!Directory.Exists(baseDir))
            return null;
        string top = Path.Join(baseDir, name), owners = Path.Join(top, "owners");
        foreach (string dir in new[] { top, owners })
        {
            if (mkdir_path(dir, 0x1c0 /* 0700 */) != 0 && Marshal.GetLastPInvokeError() != EEXIST)
                return null;
            if (!OwnedPrivateDirectory(dir, uid))
                return null;
        }
        return owners;
    }

    private static unsafe bool OwnedPrivateDirectory(string path, uint uid)
    {
        stat st;
        byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            if (lstat(p, &st) != 0)
                return false;
        }
        return (st.st_mode & S_IFMT) == S_IFDIR && st.st_uid == uid && (st.st_mode & 0x12 /* 022 */) == 0;
    }

    /// <summary>
    /// Creates and locks this process's lock file in <paramref name="store"/>. The file is made under a temporary
    /// name, locked, given its header and only then renamed into place, so a reclaimer never sees an unlocked
    /// owner file that is still being born.
    /// </summary>
    internal static CgroupOwner Acquire(string? store)
    {
        string token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));
        if (store is null)
            return new CgroupOwner(token, -1, null, "no private directory for ownership locks (/run/isolation/owners for root, $XDG_RUNTIME_DIR/isolation/owners or /tmp/isolation-UID/owners otherwise)");
        int lastErrno = 0;
        for (int attempt = 0; attempt < 3; attempt++, token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)))
        {
            string temporary = Path.Join(store, "." + token + NewSuffix), final = Path.Join(store, token + LockSuffix);
            int fd = open_path(temporary, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0x180 /* 0600 */);
            if (fd < 0)
            {
                lastErrno = Marshal.GetLastPInvokeError();
                continue;
            }
            // A reclaimer may lock and remove the temporary file between our open and flock: the rename then fails, and we try again.
            if (flock(fd, LOCK_EX | LOCK_NB) == 0 && WriteAll(fd, Header + "\n") && rename_path(temporary, final) == 0)
                return new CgroupOwner(token, fd, final, null);
            lastErrno = Marshal.GetLastPInvokeError();
            close(fd);
            unlink_path(temporary);
        }
        return new CgroupOwner(token, -1, null, $"could not create a lock file in {store}: {Errnos.Describe(lastErrno)}");
    }

    /// <summary>
    /// Host, before the first mkdir of a cgroup in <paramref name="parentDirectory"/>: writes the directory into
    /// the lock file (once), so a reclaimer knows where to look. Only names from <see cref="CgroupDriver.NewName"/> are recorded.
    /// </summary>
    public void Record(string parentDirectory, string cgroupName)
    {
        // Runs on every start with a cgroup: no allocation once the directory is recorded.
        if (_fd < 0 || cgroupName.Length <= Token.Length || !cgroupName.EndsWith(Token, StringComparison.Ordinal)
            || cgroupName[^(Token.Length + 1)] != '-' || parentDirectory.Contains('\n'))
            return;
        lock (_lock)
        {
            if (!_recorded.Contains(parentDirectory) && WriteAll(_fd, ParentLine + parentDirectory + "\n"))
                _recorded.Add(parentDirectory);
        }
    }

    /// <summary>One write(2) of <paramref name="text"/> (O_APPEND: whole lines, at the end).</summary>
    private static unsafe bool WriteAll(int fd, string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        fixed (byte* p = bytes)
            return write(fd, p, bytes.Length) == bytes.Length;
    }
}
