using Isolation.Interop;

namespace Isolation;

/// <summary>
/// Starting a sandbox failed before the program ran. Says which step failed, on which path, with which
/// errno, and what to do about it. Nothing of the failed sandbox is left behind: no process, no file
/// descriptor, no cgroup.
/// </summary>
public sealed class SandboxSetupException : Exception
{
    /// <summary>Creates the exception; <paramref name="what"/> names the step as the user wrote it.</summary>
    public SandboxSetupException(SetupStep step, string what, int errno, string? path = null, string? hint = null, int mountIndex = -1)
        : base(Format(what, errno, hint))
    {
        Step = step;
        What = what;
        Errno = errno;
        Path = path;
        Hint = hint;
        MountIndex = mountIndex;
    }

    /// <summary>The step that failed.</summary>
    public SetupStep Step { get; }

    /// <summary>What was being done, as the message starts with it (without the errno and the hint).</summary>
    internal string What { get; }

    /// <summary>The errno the kernel returned (0 when the failure was not a system call's).</summary>
    public int Errno { get; }

    /// <summary>The errno's symbolic name, such as <c>EPERM</c>.</summary>
    public string ErrnoName => Errnos.Name(Errno);

    /// <summary>The path involved, when there is one.</summary>
    public string? Path { get; }

    /// <summary>What to do about it, when we know.</summary>
    public string? Hint { get; }

    /// <summary>For <see cref="SetupStep.Mount"/>: the 1-based number of the mount operation as written, else -1.</summary>
    public int MountIndex { get; }

    private static string Format(string what, int errno, string? hint)
    {
        string message = errno != 0 ? $"{what}: {Errnos.Describe(errno)}" : what;
        message = hint is null ? message : $"{message}. Hint: {hint}";
        // The errnos a host's configuration causes (a sysctl, AppArmor, no delegation, an old kernel): the probe says which.
        return errno == Tmds.Linux.LibC.EPERM || errno == Tmds.Linux.LibC.EACCES || errno == Tmds.Linux.LibC.ENOSPC || errno == Tmds.Linux.LibC.ENOSYS
            ? $"{message} (HostCapabilities.Probe(), or `isolate probe`, lists what this host allows this caller, with fixes)"
            : message;
    }
}
