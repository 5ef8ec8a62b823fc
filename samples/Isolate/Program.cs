using Isolate;

// isolate unshare [options] [--] program [args...]   util-linux unshare(1)'s command line
// isolate bwrap [options] [--] program [args...]     bubblewrap's command line
DiagnosticsOff.Ensure(args); // re-executes once with the .NET diagnostics IPC off
// A symlink named bwrap to isolate is bubblewrap's drop-in: the bwrap face, naming itself as it was invoked.
if (BwrapCommand.InvokedAs() is { } bwrapName)
{
    PrepareSpawnHelper(["bwrap", .. args]);
    return await BwrapCommand.RunAsync(args, bwrapName);
}
PrepareSpawnHelper(args);
return args switch
{
    ["unshare", .. var rest] => await UnshareCommand.RunAsync(rest),
    ["bwrap", .. var rest] => await BwrapCommand.RunAsync(rest),
    ["probe", .. var rest] => ProbeCommand.Run(rest),
    ["--version" or "-V", ..] => Version(),
    ["--help" or "-h", ..] => Usage(help: true),
    _ => Usage(),
};

// Start-up: the spawn helper loads on the other core while the command line is parsed and the spec built. Not for
// --help and --version, which start nothing; a failure here is left to Start, which reports it as it always has.
static void PrepareSpawnHelper(string[] args)
{
    if (args is not ["unshare" or "bwrap", ..] || args.Any(a => a is "--help" or "-h" or "--version" or "-V"))
        return;
    try
    {
        Isolation.IsolationSpec.PrepareSpawnHelper();
    }
    catch (Exception e) when (e is Isolation.SandboxSetupException or DllNotFoundException)
    {
    }
}

// isolate --help: the usage on stdout, 0; anything else it does not know: on stderr, 2.
static int Usage(bool help = false)
{
    (help ? Console.Out : Console.Error).WriteLine("""
        usage: isolate unshare [options] [--] program [arguments...]   (util-linux unshare's options)
               isolate bwrap [options] [--] program [arguments...]     (bubblewrap's options)
        Run 'isolate unshare --help' or 'isolate bwrap --help' for the options of each.
        """);
    return help ? 0 : 2;
}

static int Version()
{
    Console.Out.WriteLine($"isolate {UnshareArguments.Version()}");
    return 0;
}
