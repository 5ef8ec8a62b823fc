using Isolation.Spawning;

namespace Isolation;

public sealed partial class IsolationSpec
{
    /// <summary>
    /// Starts this process's spawn helper now, if it has none, instead of in the first <see cref="Start"/>.
    /// The call costs the caller only the helper's vfork and exec; the helper then loads on another core while
    /// the caller goes on (parsing its command line, building its spec), so that the first start does not wait
    /// for it. A short-lived command that starts one sandbox gains most from calling this first thing.
    /// </summary>
    /// <remarks>
    /// The helper acts with the identity (uid, gid, capabilities, user, mount and PID namespace) of the calling
    /// thread at this moment: a start from a thread whose identity has changed since starts a new helper, as
    /// always (DESIGN.md §2). Safe to call more than once and from several threads.
    /// </remarks>
    /// <exception cref="SandboxSetupException">The helper could not be started (<see cref="SetupStep.StartHelper"/>).</exception>
    public static void PrepareSpawnHelper() => _ = SpawnHelper.Current;
}
