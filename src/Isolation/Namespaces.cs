namespace Isolation;

/// <summary>
/// The Linux namespaces a sandbox gets new copies of (namespaces(7)). Values are the kernel's
/// <c>CLONE_NEW*</c> flags.
/// </summary>
[Flags]
public enum Namespaces
{
    /// <summary>Share every namespace with the caller.</summary>
    None = 0,

    /// <summary>Time namespace (<c>CLONE_NEWTIME</c>): own CLOCK_MONOTONIC and CLOCK_BOOTTIME offsets.</summary>
    Time = 0x00000080,

    /// <summary>Mount namespace (<c>CLONE_NEWNS</c>): own mount table.</summary>
    Mount = 0x00020000,

    /// <summary>Cgroup namespace (<c>CLONE_NEWCGROUP</c>): the sandbox's cgroup appears as the root.</summary>
    Cgroup = 0x02000000,

    /// <summary>UTS namespace (<c>CLONE_NEWUTS</c>): own host name and NIS domain name.</summary>
    Uts = 0x04000000,

    /// <summary>IPC namespace (<c>CLONE_NEWIPC</c>): own System V IPC objects and POSIX message queues.</summary>
    Ipc = 0x08000000,

    /// <summary>User namespace (<c>CLONE_NEWUSER</c>): own uid/gid mappings and capabilities.</summary>
    User = 0x10000000,

    /// <summary>PID namespace (<c>CLONE_NEWPID</c>): the program is PID 1 and sees only its descendants.</summary>
    Pid = 0x20000000,

    /// <summary>Network namespace (<c>CLONE_NEWNET</c>): only a loopback interface, brought up.</summary>
    Net = 0x40000000,

    /// <summary>All eight namespaces.</summary>
    All = Time | Mount | Cgroup | Uts | Ipc | User | Pid | Net,
}
