using System.Runtime.InteropServices;
using static Tmds.Linux.LibC;

namespace Isolation.Spawning;

/// <summary>
/// The two descriptors a running sandbox is held by: its pidfd (the handle: signals go to exactly this
/// process, never to a recycled pid, pidfd_send_signal(2)) and the status socket on which the spawn helper
/// reports its exit. A SafeHandle, so that every use adds a reference: a <see cref="IsolatedProcess.Signal"/>
/// racing a <see cref="IsolatedProcess.Dispose"/> either uses the live descriptor or sees it disposed, never a
/// number that has since been reused for another sandbox's; and an IsolatedProcess nobody disposed does not
/// leak them.
/// </summary>
internal sealed class SandboxHandle : SafeHandle
{
    public SandboxHandle(int pidfd, int statusFd) : base(-1, ownsHandle: true)
    {
        SetHandle(pidfd);
        StatusFd = statusFd;
    }

    /// <summary>The host's end of the spawn's status socket.</summary>
    public int StatusFd { get; }

    public int Pidfd => (int)handle;

    public override bool IsInvalid => handle == -1;

    protected override bool ReleaseHandle()
    {
        close((int)handle);
        close(StatusFd);
        return true;
    }
}
