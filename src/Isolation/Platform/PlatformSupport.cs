using System.Runtime.InteropServices;

namespace Isolation.Platform;

/// <summary>
/// Where the library can run, said in one sentence before anything fails obscurely: Linux only (the whole
/// assembly is <c>[SupportedOSPlatform("linux")]</c>, set in Directory.Build.props), on the runtimes the package
/// carries native assets for.
/// </summary>
internal static class PlatformSupport
{
    /// <summary>The runtimes the package carries libIsolationNative.so, the spawn helper and the init for.</summary>
    public static readonly string[] Runtimes = ["linux-x64", "linux-arm64", "linux-musl-x64", "linux-musl-arm64"];

    /// <summary>Throws <see cref="PlatformNotSupportedException"/> unless this process runs on Linux.</summary>
    public static void EnsureLinux()
    {
        if (!OperatingSystem.IsLinux())
            throw NotLinux(RuntimeInformation.OSDescription);
    }

    /// <summary>The exception for another operating system (tests call it with a made-up description).</summary>
    internal static PlatformNotSupportedException NotLinux(string osDescription) =>
        new($"Isolation runs only on Linux, whose namespaces, cgroups and seccomp it is built on; this process runs on {osDescription}.");

    /// <summary>
    /// The exception for a process whose libIsolationNative.so cannot be found or loaded: one sentence that names
    /// the runtime and what to do, instead of the runtime's list of every path it probed.
    /// </summary>
    internal static Exception NativeLibraryMissing(string runtimeIdentifier, Architecture architecture, string? loadError)
    {
        if (architecture is not (Architecture.X64 or Architecture.Arm64))
            return new PlatformNotSupportedException(
                $"Isolation ships its native code for x64 and arm64 Linux ({string.Join(", ", Runtimes)}) only; this process runs on {architecture.ToString().ToLowerInvariant()}.");
        if (loadError is not null)
            return new DllNotFoundException(
                $"Isolation's native library libIsolationNative.so for {runtimeIdentifier} was found but could not be loaded ({loadError.TrimEnd('.', ' ', '\n')}); it needs glibc 2.27 or newer, or musl from the linux-musl-* runtimes.");
        return new DllNotFoundException(
            $"Isolation's native library libIsolationNative.so for {runtimeIdentifier} is missing beside Isolation.dll and in runtimes/{runtimeIdentifier}/native/; restore the Isolation package for this runtime (it carries {string.Join(", ", Runtimes)}) or build it with make -C src/Isolation.Native.");
    }
}
