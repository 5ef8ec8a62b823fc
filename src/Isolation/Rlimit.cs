namespace Isolation;

/// <summary>A resource limited with setrlimit(2)/prlimit(2); values as in <c>sys/resource.h</c>.</summary>
public enum RlimitResource
{
    /// <summary>RLIMIT_CPU: CPU time in seconds; SIGXCPU at the soft limit, SIGKILL at the hard limit.</summary>
    Cpu = 0,

    /// <summary>RLIMIT_FSIZE: largest file the process may create, in bytes.</summary>
    FileSize = 1,

    /// <summary>RLIMIT_DATA: data segment size in bytes.</summary>
    Data = 2,

    /// <summary>RLIMIT_STACK: stack size in bytes.</summary>
    Stack = 3,

    /// <summary>RLIMIT_CORE: core file size in bytes (0: no core dumps).</summary>
    Core = 4,

    /// <summary>RLIMIT_RSS: ignored by Linux since 2.6.</summary>
    Rss = 5,

    /// <summary>RLIMIT_NPROC: processes of the real user id (counted per user, not per sandbox; prefer PidsMax).</summary>
    Nproc = 6,

    /// <summary>RLIMIT_NOFILE: one more than the highest file descriptor number.</summary>
    NoFile = 7,

    /// <summary>RLIMIT_MEMLOCK: lockable memory in bytes.</summary>
    MemLock = 8,

    /// <summary>RLIMIT_AS: address space in bytes.</summary>
    AddressSpace = 9,

    /// <summary>RLIMIT_LOCKS: file locks.</summary>
    Locks = 10,

    /// <summary>RLIMIT_SIGPENDING: queued signals.</summary>
    SigPending = 11,

    /// <summary>RLIMIT_MSGQUEUE: bytes in POSIX message queues.</summary>
    MsgQueue = 12,

    /// <summary>RLIMIT_NICE: ceiling of the nice value (20 - limit).</summary>
    Nice = 13,

    /// <summary>RLIMIT_RTPRIO: ceiling of the real-time priority.</summary>
    RtPrio = 14,

    /// <summary>RLIMIT_RTTIME: real-time CPU time in microseconds without a blocking call.</summary>
    RtTime = 15,
}

/// <summary>One rlimit for the sandbox's program, set by the parent with prlimit(2) before it runs.</summary>
/// <param name="Resource">The resource.</param>
/// <param name="Soft">The soft limit, which the kernel enforces (<see cref="Unlimited"/> for none).</param>
/// <param name="Hard">The ceiling for the soft limit; an unprivileged process can lower it but never raise it.</param>
public readonly record struct Rlimit(RlimitResource Resource, ulong Soft, ulong Hard)
{
    /// <summary>RLIM_INFINITY.</summary>
    public const ulong Unlimited = ulong.MaxValue;

    /// <summary>Checks the values; throws <see cref="ArgumentException"/> saying what to do.</summary>
    internal void Validate()
    {
        if (!Enum.IsDefined(Resource))
            throw new ArgumentException($"Unknown rlimit resource {(int)Resource}; use a value of RlimitResource.");
        if (Soft > Hard)
            throw new ArgumentException($"The soft {Resource} limit ({Soft}) is above the hard limit ({Hard}); setrlimit(2) requires soft <= hard.");
    }
}
