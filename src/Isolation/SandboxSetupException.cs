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

    /// <summary>
    /// What was being done, as the message starts with it, without the errno and the hint: <c>mount #3: bind /a on /b</c>,
    /// <c>chdir /work</c>. For a program that tells failures in its own words and adds the errno itself.
    /// </summary>
    public string What { get; }

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

    /// <summary>
    /// For <see cref="SetupStep.Mount"/>: the operation failed while creating its target (the missing directory or
    /// file at <see cref="Path"/> to mount on), before it mounted anything; false when the mount itself (or a later
    /// part of it) failed. A bind whose source is missing fails with ENOENT either way; this tells which path it was.
    /// </summary>
    public bool CreatingTarget { get; init; }

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
