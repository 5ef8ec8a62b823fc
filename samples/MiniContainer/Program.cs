using System.Runtime.InteropServices;
using Isolation;
using Isolation.Mounts;

// minicontainer [options] ROOTFS [COMMAND [ARGS...]]
//
// Runs COMMAND (default /bin/sh) with ROOTFS as its root file system, the way `docker run --rm -it IMAGE sh`
// does: the image is the lower layer of an overlay whose upper layer is a tmpfs, so every write vanishes
// when the container exits; it gets its own hostname, PID 1 init, /proc, a minimal /dev and a /tmp; the
// paths container engines hide stay hidden. As root it uses no user namespace; as anyone else it maps the
// caller to root in a new one (rootless).

string? hostname = "minicontainer";
bool network = true;
bool readOnly = false;
var binds = new List<(string Source, string Target, bool ReadOnly)>();
int i = 0;
for (; i < args.Length && args[i].StartsWith('-'); i++)
{
    switch (args[i])
    {
        case "--hostname" when i + 1 < args.Length: hostname = args[++i]; break;
        case "--no-network": network = false; break;
        case "--read-only": readOnly = true; break;
        case "-v" or "--volume" when i + 1 < args.Length:
        {
            // docker's -v HOST:CONTAINER[:ro]
            string[] parts = args[++i].Split(':');
            if (parts.Length is < 2 or > 3 || (parts.Length == 3 && parts[2] != "ro"))
                return Usage($"--volume takes HOST:CONTAINER or HOST:CONTAINER:ro, not '{args[i]}'");
            binds.Add((Path.GetFullPath(parts[0]), parts[1], parts.Length == 3));
            break;
        }
        case "-h" or "--help": return Usage(null);
        default: return Usage($"unknown option {args[i]}");
    }
}
if (i >= args.Length)
    return Usage("no root file system given");
string rootfs = Path.GetFullPath(args[i]);
if (!Directory.Exists(rootfs))
    return Usage($"{rootfs} is not a directory");
string command = i + 1 < args.Length ? args[i + 1] : "/bin/sh";
string[] arguments = i + 2 < args.Length ? args[(i + 2)..] : [];

bool root = geteuid() == 0;
Namespaces namespaces = Namespaces.Mount | Namespaces.Pid | Namespaces.Uts | Namespaces.Ipc
    | (root ? 0 : Namespaces.User) | (network ? 0 : Namespaces.Net);

NamespaceBuilder builder = new NamespaceBuilder()
    .WithNamespaces(namespaces)
    .WithHostname(hostname)
    .WithInit() // like `docker run --init`: PID 1 reaps orphans and forwards signals
    .WithMounts(m =>
    {
        m.Root(rootfs, readOnly) // --read-only: the root itself, not /tmp, /dev or volumes (docker run --read-only)
            .TmpOverlay("/", [rootfs]) // writes go to a tmpfs and vanish, as with --rm
            .Proc()
            .Dev()
            .Tmpfs("/tmp", mode: (UnixFileMode)0x3FF /* 01777 */)
            .File("/etc/hostname", hostname + "\n")
            .BindReadOnly("/etc/resolv.conf", "/etc/resolv.conf", optional: true);
        if (network)
            m.BindReadOnly("/sys", "/sys"); // a sysfs of our own needs our own network namespace
        else
            m.Sysfs();
        foreach ((string source, string target, bool ro) in binds)
            m.Bind(source, target, readOnly: ro);
        m.ContainerDefaults();
    })
    .WithEnvironment(e => e.Clear()
        .Set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .Set("HOME", "/root")
        .Set("HOSTNAME", hostname)
        .Set("TERM", Environment.GetEnvironmentVariable("TERM") ?? "xterm"))
    .WithWorkingDirectory("/");
if (!root)
    builder = builder.MapCurrentUserToRoot();

try
{
    IsolationSpec spec = builder.Build();
    await using IsolatedProcess container = spec.Start(command, arguments);
    ExitStatus status = await container.WaitForExitAsync();
    return status.ShellExitCode;
}
catch (SandboxSetupException e)
{
    Console.Error.WriteLine($"minicontainer: {e.Message}");
    return 125; // docker's "the container could not be started"
}

static int Usage(string? error)
{
    if (error is not null)
        Console.Error.WriteLine($"minicontainer: {error}");
    Console.Error.WriteLine("""
        usage: minicontainer [--hostname NAME] [--no-network] [--read-only] [-v HOST:CONTAINER[:ro]]... ROOTFS [COMMAND [ARGS...]]
        Runs COMMAND (default /bin/sh) in ROOTFS with a throw-away overlay, its own hostname, PID 1, /proc, /dev and /tmp.
        A busybox root file system:  mkdir -p rootfs/bin && cp /bin/busybox rootfs/bin/ && rootfs/bin/busybox --install -s rootfs/bin
        """);
    return error is null ? 0 : 2;
}

[DllImport("libc")]
static extern uint geteuid();
