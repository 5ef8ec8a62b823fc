using Isolation;
using Isolation.Mounts;

namespace Isolate;

/// <summary>What a call on the mount plan stands for on bwrap's command line.</summary>
internal enum BwrapMountKind
{
    /// <summary><c>--bind</c>, <c>--ro-bind</c>, <c>--dev-bind</c> (and -try, -fd), and <c>--proc</c> without a PID namespace.</summary>
    Bind,

    /// <summary><c>--tmpfs</c>, <c>--proc</c>, <c>--mqueue</c>: a file system mounted on the target.</summary>
    Mount,

    /// <summary><c>--dev</c>: a tmpfs holding device nodes, devpts, shm and links.</summary>
    Dev,

    Dir,
    Symlink,
    File,
    Chmod,
    RemountReadOnly,

    /// <summary><c>--overlay</c>, <c>--tmp-overlay</c>, <c>--ro-overlay</c>.</summary>
    Overlay,

    /// <summary>Paths made read-only: <c>--ro-bind-data</c>, the kernel's knobs under <c>--proc</c>, <c>--untrusted</c>'s.</summary>
    ReadOnly,

    /// <summary><c>--untrusted</c>'s masks over the host's runtime directories and proc files.</summary>
    Mask,
}

/// <summary>One call on the mount plan: its kind, its target, and for a bind its source, for a file system its type, for --chmod its mode.</summary>
internal sealed record BwrapMountCall(BwrapMountKind Kind, string Dest, string? Source = null, int Mode = 0);

/// <summary>
/// The calls <c>isolate bwrap</c> makes on the mount plan, numbered as the library numbers them
/// (<see cref="SandboxSetupException.MountIndex"/>: one per builder call, from 1), so that a failed setup is told in
/// bwrap's words from the exception's data (<see cref="BwrapMessages.SetupFailed"/>) rather than from its text.
/// Every builder call of the face goes through <see cref="Note"/>, and nothing else adds to the plan.
/// </summary>
internal sealed class BwrapMountCalls
{
    private readonly List<BwrapMountCall> _calls = [];

    /// <summary>Records the next builder call on <paramref name="m"/> and returns it, to make that call on.</summary>
    public MountPlanBuilder Note(MountPlanBuilder m, BwrapMountKind kind, string dest, string? source = null, int mode = 0)
    {
        _calls.Add(new BwrapMountCall(kind, dest, source, mode));
        return m;
    }

    /// <summary>The call a <see cref="SandboxSetupException.MountIndex"/> names, or null (0: one of the library's own).</summary>
    public BwrapMountCall? Find(int mountIndex) => mountIndex >= 1 && mountIndex <= _calls.Count ? _calls[mountIndex - 1] : null;

    /// <summary>Forgets the calls (the plan is being made again).</summary>
    public void Clear() => _calls.Clear();
}
