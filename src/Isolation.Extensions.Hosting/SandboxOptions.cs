namespace Isolation.Extensions.Hosting;

/// <summary>
/// One named sandbox spec as configuration describes it (a section under <c>Isolation:Specs</c>). Everything a
/// configuration file can say; what it cannot (seccomp profiles, Landlock rules, stdio) a named spec adds in code
/// with <see cref="IsolationBuilder.Configure"/>.
/// </summary>
/// <example>
/// <code>
/// "Isolation": {
///   "Specs": {
///     "jobs": { "Namespaces": "User, Pid, Mount, Net", "MountProc": true, "PidsMax": 64, "MemoryMax": 268435456,
///               "Timeout": "00:01:00", "ReadOnlyBinds": { "/srv/tools": "/tools" } }
///   }
/// }
/// </code>
/// </example>
public sealed class SandboxOptions
{
    /// <summary>Start from <see cref="NamespaceBuilder.ForUntrustedCode"/> instead of an empty builder.</summary>
    public bool UntrustedCode { get; set; }

    /// <summary>The namespaces (configuration: <c>"User, Pid, Mount"</c>); none means the preset's or none.</summary>
    public Namespaces? Namespaces { get; set; }

    /// <summary>Map the host's uid and gid to root inside (needs <see cref="Namespaces.User"/>); on by default with a user namespace.</summary>
    public bool? MapCurrentUserToRoot { get; set; }

    /// <summary>The host name inside (needs <see cref="Namespaces.Uts"/>).</summary>
    public string? Hostname { get; set; }

    /// <summary>Mount a new /proc (needs Pid and Mount namespaces).</summary>
    public bool MountProc { get; set; }

    /// <summary>tmpfs mounts, by target path.</summary>
    public List<string> Tmpfs { get; set; } = [];

    /// <summary>Read-write bind mounts: host source → target inside.</summary>
    public Dictionary<string, string> Binds { get; set; } = [];

    /// <summary>Read-only bind mounts: host source → target inside.</summary>
    public Dictionary<string, string> ReadOnlyBinds { get; set; } = [];

    /// <summary>The program's working directory inside.</summary>
    public string? WorkingDirectory { get; set; }

    /// <summary>Environment variables to set (on top of the inherited or, for UntrustedCode, cleared environment).</summary>
    public Dictionary<string, string> Environment { get; set; } = [];

    /// <summary>A minimal init as PID 1 (<see cref="NamespaceBuilder.WithInit"/>).</summary>
    public bool Init { get; set; }

    /// <summary>Kill the sandbox after this long (configuration: <c>"00:01:00"</c>).</summary>
    public TimeSpan? Timeout { get; set; }

    /// <summary>cgroup memory limit in bytes.</summary>
    public long? MemoryMax { get; set; }

    /// <summary>cgroup limit on processes and threads.</summary>
    public long? PidsMax { get; set; }

    /// <summary>cgroup CPU limit in CPUs (0.5 = half a CPU).</summary>
    public double? CpuMax { get; set; }

    /// <summary>Run without limits (and say why in <see cref="IsolatedProcess.CgroupError"/>) where no cgroup can be created.</summary>
    public bool CgroupBestEffort { get; set; }
}
