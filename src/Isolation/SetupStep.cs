namespace Isolation;

/// <summary>A step of starting a sandbox, as named in a <see cref="SandboxSetupException"/>.</summary>
/// <remarks>Values 1–23 and 30–39 (security) are reported by the native child (isolation_native.h, <c>enum iso_step</c>).</remarks>
public enum SetupStep
{
    /// <summary>No step.</summary>
    None = 0,

    /// <summary>The child waiting for the parent to finish its part (id maps, cgroups).</summary>
    WaitForParent = 1,

    /// <summary>Creating the cgroup namespace.</summary>
    UnshareCgroup = 2,

    /// <summary>Creating the time namespace.</summary>
    UnshareTime = 3,

    /// <summary>Writing the time namespace's clock offsets.</summary>
    TimeOffsets = 4,

    /// <summary>Setting the propagation of the root mount.</summary>
    MountPropagation = 5,

    /// <summary>One operation of the mount plan (see <see cref="SandboxSetupException.MountIndex"/>).</summary>
    Mount = 6,

    /// <summary>Setting the host name.</summary>
    Hostname = 7,

    /// <summary>Setting the NIS domain name.</summary>
    DomainName = 8,

    /// <summary>Bringing up the loopback interface.</summary>
    Loopback = 9,

    /// <summary>Starting a new session (setsid).</summary>
    NewSession = 10,

    /// <summary>Setting the parent-death signal.</summary>
    DeathSignal = 11,

    /// <summary>Setting the supplementary groups.</summary>
    SetGroups = 12,

    /// <summary>Switching to the requested group id.</summary>
    SetGid = 13,

    /// <summary>Switching to the requested user id.</summary>
    SetUid = 14,

    /// <summary>Connecting standard input, output and error.</summary>
    Stdio = 15,

    /// <summary>Changing to the working directory.</summary>
    WorkingDirectory = 16,

    /// <summary>Closing inherited file descriptors.</summary>
    CloseFileDescriptors = 17,

    /// <summary>Executing the program.</summary>
    Exec = 18,

    /// <summary>Executing the sandbox's init.</summary>
    ExecInit = 19,

    /// <summary>The init forking the program.</summary>
    InitFork = 20,

    /// <summary>The child finding the spawn helper gone before it was armed to die with it.</summary>
    HelperGone = 21,

    /// <summary>Moving the spawn's descriptors (stdio, passed descriptors, the init) into place in the child.</summary>
    ArrangeFileDescriptors = 22,

    /// <summary>Entering the user namespace of <see cref="NamespaceBuilder.JoinUserNamespaceAfterSetup(string)"/> after setup.</summary>
    JoinUserNamespaceAfterSetup = 23,

    // --- security (Security/, child_security.c): values 30-39, in the order the child runs them ---

    /// <summary>Limiting user namespaces in the sandbox's user namespace (<c>user.max_user_namespaces</c>).</summary>
    UserNamespaceLimit = 30,

    /// <summary>Creating the nested user namespace the program runs in when nested user namespaces are disabled.</summary>
    NestedUserNamespace = 31,

    /// <summary>Becoming root of the new user namespace before setup, or keeping the permitted capabilities across the identity switch (<c>PR_SET_KEEPCAPS</c>).</summary>
    SecurityIdentity = 32,

    /// <summary>Dropping capabilities from the bounding set.</summary>
    CapabilityBoundingSet = 33,

    /// <summary>Setting the securebits.</summary>
    SecureBits = 34,

    /// <summary>Setting the permitted, effective and inheritable capabilities (capset).</summary>
    Capabilities = 35,

    /// <summary>Raising ambient capabilities.</summary>
    AmbientCapabilities = 36,

    /// <summary>Setting no_new_privs.</summary>
    NoNewPrivileges = 37,

    /// <summary>Building and enforcing the Landlock ruleset.</summary>
    Landlock = 38,

    /// <summary>Loading a seccomp filter.</summary>
    Seccomp = 39,

    /// <summary>Creating the child process and its namespaces (clone3).</summary>
    Clone = 100,

    /// <summary>Writing <c>/proc/PID/setgroups</c>.</summary>
    Setgroups = 101,

    /// <summary>Writing the uid map.</summary>
    UidMap = 102,

    /// <summary>Writing the gid map.</summary>
    GidMap = 103,

    /// <summary>Releasing the child after the parent's part.</summary>
    Release = 104,

    /// <summary>Creating the sandbox's cgroup, writing its limits or placing the child in it.</summary>
    Cgroup = 105,

    /// <summary>Opening a file or pipe for standard input, output or error.</summary>
    OpenStdio = 106,

    /// <summary>Loading the init executable.</summary>
    LoadInit = 107,

    /// <summary>Talking to the spawn helper (a spawn it could not take, or a helper that went away).</summary>
    SpawnHelper = 108,

    /// <summary>Starting the spawn helper process.</summary>
    StartHelper = 109,

    /// <summary>Joining a namespace of <see cref="NamespaceBuilder.JoinNamespace(Namespaces, string)"/> (setns), before the child is created.</summary>
    JoinNamespace = 110,

    /// <summary>Setting an rlimit of the child with prlimit(2).</summary>
    Rlimit = 120,
}
