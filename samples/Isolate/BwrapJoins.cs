using Isolation;
using Microsoft.Win32.SafeHandles;

namespace Isolate;

/// <summary>
/// bwrap's <c>--userns FD</c>, <c>--userns2 FD</c> and <c>--pidns FD</c>: the sandbox joins the namespaces of descriptors
/// isolate inherited (<see cref="NamespaceBuilder.JoinNamespace(Namespaces, System.Runtime.InteropServices.SafeHandle)"/>).
/// As in bwrap: <c>--userns</c> replaces the user namespace bwrap would create (no id maps; <c>--uid</c>/<c>--gid</c>
/// switch to ids it maps), and other new namespaces belong to it; <c>--pidns</c> is the PID namespace the sandbox runs
/// in, or the parent of its new one with <c>--unshare-pid</c>; <c>--userns2</c> is entered after setup.
/// </summary>
internal sealed class BwrapJoins
{
    private readonly Dictionary<string, int> _fds;
    private readonly uint? _uid, _gid;

    private BwrapJoins(Dictionary<string, int> fds, uint? uid, uint? gid)
    {
        _fds = fds;
        _uid = uid;
        _gid = gid;
    }

    private bool JoinsUser => _fds.ContainsKey("--userns");

    /// <summary>
    /// Before bwrap's own user-namespace defaults: bwrap's usage errors (<paramref name="usageError"/>, in its words), and
    /// with <c>--userns</c> the <c>--uid</c>/<c>--gid</c> taken here (switched to inside the joined namespace) so that the
    /// checks for a new user namespace pass them by. Null when there is nothing to join.
    /// </summary>
    public static BwrapJoins? Take(Dictionary<string, int> fds, Namespaces ns, bool userTry, bool untrusted, ref uint? uid, ref uint? gid, out string? usageError)
    {
        bool user = fds.ContainsKey("--userns");
        usageError = user && ns.HasFlag(Namespaces.User) ? "--userns not compatible --unshare-user"
            : user && userTry ? "--userns not compatible --unshare-user-try"
            : untrusted && (user || fds.ContainsKey("--userns2")) ? "--userns and --userns2 cannot be combined with --untrusted, whose sandbox has a user namespace of its own"
            : null;
        if (fds.Count == 0 || usageError is not null)
            return null;
        var join = new BwrapJoins(fds, user ? uid : null, user ? gid : null);
        if (user)
            uid = gid = null;
        return join;
    }

    /// <summary>The namespaces to create: not the user namespace that <c>--userns</c> joins.</summary>
    public Namespaces Created(Namespaces ns) => JoinsUser ? ns & ~Namespaces.User : ns;

    public NamespaceBuilder Apply(NamespaceBuilder b)
    {
        if (_fds.TryGetValue("--userns", out int userns))
            b = b.JoinNamespace(Namespaces.User, Handle(userns));
        if (_uid is not null || _gid is not null)
            b = b.RunAs(_uid ?? uint.MaxValue, _gid ?? uint.MaxValue); // (uint)-1: unchanged (setresuid(2))
        if (_fds.TryGetValue("--pidns", out int pidns))
            b = b.JoinNamespace(Namespaces.Pid, Handle(pidns));
        if (_fds.TryGetValue("--userns2", out int userns2))
            b = b.JoinUserNamespaceAfterSetup(Handle(userns2));
        return b;
    }

    // Build() duplicates it; isolate's own descriptor stays as it was.
    private static SafeFileHandle Handle(int fd) => new(fd, ownsHandle: false);
}
