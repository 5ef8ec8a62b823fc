namespace Isolation.Tests.Unit;

/// <summary>
/// Input the kernel (or the runtime's timer) would refuse is refused before any system call: at Build() for
/// what the spec holds, at Start() for argv and envp — with the limit named, not as a failed start.
/// </summary>
public sealed class KernelLimitTests
{
    private static NamespaceBuilder WithMountNamespace() =>
        new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Mount).MapCurrentUserToRoot();

    [Fact]
    public void A_timeout_longer_than_the_timer_allows_fails_at_Build()
    {
        // System.Threading.Timer takes at most 0xFFFFFFFE ms (~49.7 days); beyond, Start() used to throw after the program ran.
        var e = Assert.ThrowsAny<ArgumentException>(() => new NamespaceBuilder().WithTimeout(TimeSpan.FromDays(50)).Build());

        Assert.Contains("49.7 days", e.Message);
    }

    [Fact]
    public void The_longest_timeout_the_timer_allows_builds()
    {
        IsolationSpec spec = new NamespaceBuilder().WithTimeout(TimeSpan.FromMilliseconds(0xFFFFFFFE)).Build();

        Assert.NotNull(spec);
    }

    [Theory]
    [InlineData("/../../tmp/escape")]
    [InlineData("/mnt/../../etc")]
    [InlineData("/mnt/..")]
    public void A_mount_target_with_dot_dot_is_refused_at_Build(string target)
    {
        var e = Assert.Throws<ArgumentException>(() => WithMountNamespace().WithMounts(m => m.Tmpfs(target)).Build());

        Assert.Contains("'..'", e.Message);
    }

    [Fact]
    public void A_bind_source_with_dot_dot_is_a_host_path_and_builds()
    {
        IsolationSpec spec = WithMountNamespace().WithMounts(m => m.Bind("/usr/../usr/bin", "/mnt")).Build();

        Assert.NotNull(spec);
    }

    [Fact]
    public void A_mount_path_longer_than_PATH_MAX_is_refused_at_Build()
    {
        string longPath = "/" + string.Join('/', Enumerable.Repeat(new string('d', 200), 21)); // 4221 bytes

        var e = Assert.Throws<ArgumentException>(() => WithMountNamespace().WithMounts(m => m.Bind(longPath, "/mnt")).Build());

        Assert.Contains("PATH_MAX", e.Message);
    }

    [Fact]
    public void A_path_component_longer_than_NAME_MAX_is_refused_at_Build()
    {
        var e = Assert.Throws<ArgumentException>(() => WithMountNamespace().WithMounts(m => m.Tmpfs("/" + new string('n', 256))).Build());

        Assert.Contains("NAME_MAX", e.Message);
    }

    [Fact]
    public void A_working_directory_longer_than_PATH_MAX_is_refused_at_Build()
    {
        string longPath = "/" + string.Join('/', Enumerable.Repeat(new string('w', 250), 17)); // 4267 bytes

        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithWorkingDirectory(longPath).Build());

        Assert.Contains("PATH_MAX", e.Message);
    }

    [Fact]
    public void A_hostname_is_measured_in_bytes_not_characters()
    {
        // 33 × 'é' is 33 characters but 66 UTF-8 bytes: over the kernel's 64.
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithNamespaces(Namespaces.Uts | Namespaces.User)
            .MapCurrentUserToRoot().WithHostname(new string('é', 33)).Build());

        Assert.Contains("64 bytes", e.Message);
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(-5L)]
    [InlineData(4_194_305L)]
    public void A_pids_limit_the_kernel_refuses_fails_at_Build(long pids)
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithCgroup(c => c.PidsMax(pids)).Build());

        Assert.Contains("PidsMax", e.Message);
    }

    [Fact]
    public void The_largest_pids_limit_the_kernel_takes_builds()
    {
        IsolationSpec spec = new NamespaceBuilder().WithCgroup(c => c.PidsMax(4_194_304)).Build();

        Assert.Equal(4_194_304, spec.CgroupLimits!.PidsMax);
    }

    [Theory]
    [InlineData(1e12)] // 1e12 CPUs' worth: a quota far beyond the kernel's 2^44-1 µs
    [InlineData(double.MaxValue)]
    public void A_cpu_quota_beyond_the_kernels_maximum_fails_at_Build(double cpus)
    {
        var e = Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithCgroup(c => c.CpuMax(cpus)).Build());

        Assert.Contains("quota", e.Message);
    }

    [Theory]
    [InlineData(17_592_186_044_416L, 100_000L)]
    [InlineData(999L, 100_000L)]
    [InlineData(50_000L, 999L)]
    [InlineData(50_000L, 1_000_001L)]
    public void Cpu_quota_and_period_outside_the_kernels_ranges_fail_at_Build(long quota, long period)
    {
        Assert.Throws<ArgumentException>(() => new NamespaceBuilder().WithCgroup(c => c.CpuMax(quota, period)).Build());
    }

    [Fact]
    public void An_argument_over_MAX_ARG_STRLEN_is_refused_at_Start_before_any_clone()
    {
        IsolationSpec spec = new NamespaceBuilder().Build();

        var e = Assert.Throws<ArgumentException>(() => spec.Start("/bin/true", new string('a', 128 * 1024)));

        Assert.Contains("MAX_ARG_STRLEN", e.Message);
    }

    [Fact]
    public void A_program_path_with_a_component_over_NAME_MAX_is_refused_at_Start()
    {
        IsolationSpec spec = new NamespaceBuilder().Build();

        var e = Assert.Throws<ArgumentException>(() => spec.Start("/usr/bin/" + new string('p', 300)));

        Assert.Contains("NAME_MAX", e.Message);
    }

    [Fact]
    public void An_environment_variable_over_MAX_ARG_STRLEN_is_refused_at_Start()
    {
        IsolationSpec spec = new NamespaceBuilder().WithEnvironment(env => env.Set("BIG", new string('v', 128 * 1024))).Build();

        var e = Assert.Throws<ArgumentException>(() => spec.Start("/bin/true"));

        Assert.Contains("MAX_ARG_STRLEN", e.Message);
        Assert.Contains("BIG", e.Message);
    }

    [Fact]
    public void Arguments_over_the_stack_limits_quarter_are_refused_at_Start()
    {
        // 8 MiB stack (or a spec's own RLIMIT_STACK): argv + envp may take a quarter, 2 MiB (fs/exec.c, bprm_stack_limits).
        IsolationSpec spec = new NamespaceBuilder().WithRlimit(RlimitResource.Stack, 8UL << 20).Build();
        string[] args = [.. Enumerable.Repeat(new string('x', 100 * 1024), 25)]; // 2.5 MB

        var e = Assert.Throws<ArgumentException>(() => spec.Start("/bin/true", args));

        Assert.Contains("RLIMIT_STACK", e.Message);
        Assert.Contains("E2BIG", e.Message);
    }

    [Fact]
    public void Arguments_just_under_MAX_ARG_STRLEN_still_start()
    {
        IsolationSpec spec = new NamespaceBuilder().WithStandardOutput(Stdio.Null).Build();

        using IsolatedProcess p = spec.Start("/bin/true", new string('a', 128 * 1024 - 1));

        Assert.True(p.WaitForExit().Success);
    }
}
