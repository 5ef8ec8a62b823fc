using System.Text.Json;
using Isolation.TestHost;

// isolation-testhost report            print what this process sees, as JSON
// isolation-testhost spawn [opts] -- program args...   run a sandbox with the library, print the outcome as JSON
// isolation-testhost statuses|dumpable|closed-stdio|hold|storm|pipe-file|subreaper ...   be a host under a fault (HostFaults.cs)
// isolation-testhost leaked-fds --close-range-errno N   leak descriptors, make close_range fail, start one (Descriptors.cs)
// isolation-testhost prepared-helper   PrepareSpawnHelper, then one start (PreparedHelper.cs)
// isolation-testhost cgroup-hold|cgroup-reclaim ...   a host that leaves cgroups behind, and the next one that reclaims them (CgroupLeftovers.cs)
return args switch
{
    ["report", ..] => Report.Run(args[1..]),
    ["spawn", ..] => await SpawnDriver.RunAsync(args[1..]),
    ["attempts", ..] => Attempts.Run(args[1..]),
    ["errno-of", ..] => Attempts.ErrnoOf(args[1..]),
    ["statuses", ..] => await HostFaults.StatusesAsync(args[1..]),
    ["dumpable", ..] => await HostFaults.DumpableAsync(args[1..]),
    ["closed-stdio", ..] => await HostFaults.ClosedStdioAsync(args[1..]),
    ["hold", ..] => HostFaults.Hold(args[1..]),
    ["storm", ..] => HostFaults.Storm(args[1..]),
    ["pipe-file", ..] => HostFaults.PipeFile(args[1..]),
    ["subreaper", ..] => HostFaults.Subreaper(args[1..]),
    ["leaked-fds", ..] => Descriptors.LeakedFds(args[1..]),
    ["cgroup-hold", ..] => CgroupLeftovers.Hold(args[1..]),
    ["cgroup-reclaim", ..] => CgroupLeftovers.Reclaim(args[1..]),
    ["prepared-helper"] => PreparedHelper.Run(),
    ["probe", ..] => Probe(),
    ["wait-stdin", ..] => WaitStdin(), // a .NET process with its diagnostics socket, until stdin closes
    _ => Usage(),
};

static int Probe()
{
    Console.Out.Write(Isolation.Diagnostics.HostCapabilities.Probe().ToJson());
    return 0;
}

static int WaitStdin()
{
    Console.In.ReadToEnd();
    return 0;
}

static int Usage()
{
    Console.Error.WriteLine("usage: isolation-testhost report | spawn [options] -- program [args...]");
    return 2;
}
