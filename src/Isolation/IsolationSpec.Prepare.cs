using Isolation.Spawning;

namespace Isolation;

public sealed partial class IsolationSpec
{
    /// <summary>
    /// Begins starting this process's spawn helper now, if it has none, instead of in the first <see cref="Start"/>.
    /// The helper is started on a native thread of the library's, so the call returns at once and the helper's
    /// vfork, exec and loading run on another core while the caller goes on (parsing its command line, building
    /// its spec); the first start then finds it ready. A short-lived command that starts one sandbox gains most
    /// from calling this first thing.
    /// </summary>
    /// <remarks>
    /// The helper acts with the identity (uid, gid, capabilities, user, mount and PID namespace) of the calling
    /// thread at this moment: a start from a thread whose identity has changed since starts a new helper, as
    /// always (DESIGN.md §2). Safe to call more than once and from several threads. A helper that fails to start
    /// is reported by the first <see cref="Start"/>, which tries again (<see cref="SetupStep.StartHelper"/>).
    /// </remarks>
    /// <exception cref="SandboxSetupException">The helper executable cannot be found (<see cref="SetupStep.StartHelper"/>).</exception>
    public static void PrepareSpawnHelper() => SpawnHelper.Prepare();
}
