using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>
/// A sandbox never execs with a descriptor nobody asked for, and the spawn helper keeps none of its host's, even
/// where close_range(2) is missing (before 5.9; CLOSE_RANGE_CLOEXEC before 5.11) or refused by a seccomp filter:
/// a host of the library (tests/Isolation.TestHost, Descriptors.cs) leaks a pipe on a low and on a high (above
/// 65536) descriptor, makes close_range fail for itself and everything it starts, then starts a sandbox.
/// </summary>
public sealed class DescriptorHygieneTests
{
    [Theory]
    [InlineData(38)] // ENOSYS: a kernel without close_range
    [InlineData(1)]  // EPERM
    [InlineData(13)] // EACCES: what a container's seccomp profile may answer
    public void Leaked_descriptors_reach_neither_the_sandbox_nor_the_helper_when_close_range_fails(int errno)
    {
        Host.RequireRoot(); // a seccomp filter without no_new_privs (and, with CAP_SYS_RESOURCE, a descriptor above 65536)

        LeakedFdsOutcome outcome = FaultHost.Run(DescriptorJson.Default.LeakedFdsOutcome, TimeSpan.FromSeconds(60), [], "leaked-fds", "--close-range-errno", errno.ToString());

        Assert.True(outcome.FilterInstalled && outcome.CloseRangeResult == errno, $"the seccomp filter did not make close_range fail with {errno} (got {outcome.CloseRangeResult})");
        Assert.Null(outcome.Error);
        Assert.Equal([0, 1, 2], outcome.SandboxFds);
        Assert.True(outcome.Helpers > 0, "no spawn helper found");
        Assert.True(outcome.HelperLeakedFds.Count == 0, $"the spawn helper holds the host's leaked pipe (fds {outcome.HighFd} and 40) on fds {string.Join(", ", outcome.HelperLeakedFds)}");
    }
}
