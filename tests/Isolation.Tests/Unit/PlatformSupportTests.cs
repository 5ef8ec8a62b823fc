using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Isolation.Platform;

namespace Isolation.Tests.Unit;

/// <summary>Where the library cannot run, it says so in one sentence: another OS, another architecture, a missing shim, an old kernel.</summary>
public sealed class PlatformSupportTests
{
    [Fact]
    public void The_whole_api_is_marked_linux_only()
    {
        SupportedOSPlatformAttribute attribute = Assert.Single(typeof(NamespaceBuilder).Assembly.GetCustomAttributes(typeof(SupportedOSPlatformAttribute), false).Cast<SupportedOSPlatformAttribute>());
        Assert.Equal("linux", attribute.PlatformName);
    }

    [Fact]
    public void Another_operating_system_gets_one_sentence_naming_it()
    {
        PlatformNotSupportedException e = PlatformSupport.NotLinux("Microsoft Windows 10.0.26100");
        Assert.Equal("Isolation runs only on Linux, whose namespaces, cgroups and seccomp it is built on; this process runs on Microsoft Windows 10.0.26100.", e.Message);
        PlatformSupport.EnsureLinux(); // and on this Linux it does not throw
    }

    [Fact]
    public void Another_architecture_gets_one_sentence_listing_the_shipped_runtimes()
    {
        Exception e = PlatformSupport.NativeLibraryMissing("linux-riscv64", Architecture.RiscV64, loadError: null);
        Assert.IsType<PlatformNotSupportedException>(e);
        Assert.Equal("Isolation ships its native code for x64 and arm64 Linux (linux-x64, linux-arm64, linux-musl-x64, linux-musl-arm64) only; this process runs on riscv64.", e.Message);
    }

    [Fact]
    public void A_shim_that_does_not_load_is_reported_with_the_loaders_reason_in_one_sentence()
    {
        Exception e = PlatformSupport.NativeLibraryMissing("linux-x64", Architecture.X64, "libc.so.6: version `GLIBC_2.27' not found.\n");
        Assert.IsType<DllNotFoundException>(e);
        Assert.Equal("Isolation's native library libIsolationNative.so for linux-x64 was found but could not be loaded (libc.so.6: version `GLIBC_2.27' not found); it needs glibc 2.27 or newer, or musl from the linux-musl-* runtimes.", e.Message);
    }

    [Theory]
    [InlineData("4.19", Namespaces.User | Namespaces.Pid, "Isolation (pidfds and waitid(P_PIDFD)) needs Linux 5.4 or newer; this kernel is 4.19.")]
    [InlineData("5.4.0", Namespaces.User | Namespaces.Time, "A time namespace (Namespaces.Time, WithTimeOffsets) needs Linux 5.6 or newer; this kernel is 5.4.0.")]
    public void A_kernel_older_than_a_feature_needs_fails_the_build_in_one_sentence(string kernel, Namespaces namespaces, string message)
    {
        BuilderState state = new NamespaceBuilder().WithNamespaces(namespaces).MapCurrentUserToRoot().State;
        var e = Assert.Throws<PlatformNotSupportedException>(() => KernelRequirements.Check(state, Version.Parse(kernel)));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void A_mount_plan_needs_linux_5_12()
    {
        BuilderState state = new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Mount).MapCurrentUserToRoot().WithMounts(m => m.Tmpfs("/tmp")).State;
        var e = Assert.Throws<PlatformNotSupportedException>(() => KernelRequirements.Check(state, new Version(5, 10, 0)));
        Assert.Equal("A mount plan (WithMounts: openat2, open_tree, mount_setattr) needs Linux 5.12 or newer; this kernel is 5.10.0.", e.Message);
        KernelRequirements.Check(state, new Version(5, 12)); // and 5.12 is enough
    }

    [Fact]
    public void This_kernel_is_read_and_meets_what_the_tests_use()
    {
        Assert.True(KernelRequirements.Current >= KernelRequirements.Sandboxes, $"kernel version read as {KernelRequirements.Current}");
        KernelRequirements.Check(new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Mount | Namespaces.Time).MapCurrentUserToRoot().WithMounts(m => m.Tmpfs("/tmp")).State, KernelRequirements.Current);
    }
}
