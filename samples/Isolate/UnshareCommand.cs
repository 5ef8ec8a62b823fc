using System.Runtime.InteropServices;
using Isolation;
using Microsoft.Extensions.Logging;

namespace Isolate;

/// <summary>
/// <c>isolate unshare [options] [--] [program [arguments...]]</c>: util-linux unshare(1)'s command line on
/// top of the Isolation library. Exit status as unshare's: the program's exit code; when the program is
/// killed by a signal, isolate kills itself with the same signal; 1 for a setup or usage error; 126/127
/// when the program cannot be executed / is not found.
/// </summary>
/// <remarks>
/// The one structural difference: unshare(1) calls unshare(2) on itself and then execs the program (or,
/// with -f, forks it). The library always clones the program as a new child of this process. So with or
/// without -f the program is a child: with -p it is PID 1 of the new PID namespace either way (unshare
/// without -f leaves the program outside it, with its old pid). UnshareOptions.ToPlan maps each option and notes the other differences.
/// </remarks>
internal static class UnshareCommand
{
    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern nint signal(int signum, nint handler);

    public static async Task<int> RunAsync(string[] args)
    {
        // isolate's resource and security options (shared with the bwrap face) are collected as they come.
        var flags = new SandboxFlags();
        UnshareParse parse;
        try
        {
            parse = UnshareArguments.Parse(args, flags);
        }
        catch (UnshareUsageException e)
        {
            Console.Error.WriteLine($"isolate unshare: {e.Message}");
            if (e.TryHelp)
                Console.Error.WriteLine("Try 'isolate unshare --help' for more information.");
            return 1;
        }
        switch (parse.Action)
        {
            case UnshareAction.Help:
                Console.Out.Write(UnshareArguments.Help());
                return 0;
            case UnshareAction.Version:
                Console.Out.WriteLine(UnshareArguments.Version());
                return 0;
        }
        return await RunParsedAsync(parse, flags);
    }

    private static async Task<int> RunParsedAsync(UnshareParse parse, SandboxFlags flags)
    {
        using ILoggerFactory? loggerFactory = parse.Has(UnshareOptions.Debug)
            ? LoggerFactory.Create(b => b
                .SetMinimumLevel(LogLevel.Debug)
                .AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; })
                .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace))
            : null;

        UnsharePlan plan;
        try
        {
            plan = UnshareOptions.ToPlan(parse, parse.Program, loggerFactory?.CreateLogger("isolate.unshare"));
            plan = plan with { Builder = flags.Apply(plan.Builder, fullPreset: true) };
        }
        catch (Exception e) when (e is UnshareUsageException or SandboxFlagException or ArgumentException or IOException)
        {
            Console.Error.WriteLine($"isolate unshare: {e.Message}");
            return 1;
        }

        IsolationSpec spec;
        try
        {
            spec = plan.Builder.Build();
        }
        catch (ArgumentException e)
        {
            // Build() rejects a combination before any system call; unshare would fail at run time with 1.
            Console.Error.WriteLine($"isolate: {e.Message}");
            return 1;
        }

        // unshare -f ignores SIGINT and SIGTERM while it waits (the terminal's SIGINT reaches the program,
        // which shares our process group). Without -f unshare *is* the program, so a SIGTERM or SIGHUP
        // sent to it must reach the program: we forward those.
        var forwarder = new SignalForwarder();
        var registrations = new List<PosixSignalRegistration>();
        if (plan.Fork)
        {
            // Only ignored: SIG_IGN itself, without the runtime's signal thread that a registration starts. The
            // sandbox does not inherit it: the spawn helper gives every sandbox default dispositions.
            signal(2 /* SIGINT */, 1 /* SIG_IGN */);
            signal(3 /* SIGQUIT */, 1);
            signal(15 /* SIGTERM */, 1);
        }
        else
        {
            registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGINT, c => c.Cancel = true));
            registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGQUIT, c => c.Cancel = true));
            registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; forwarder.Forward(SIGTERM); }));
            registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGHUP, c => { c.Cancel = true; forwarder.Forward(SIGHUP); }));
        }

        ExitStatus status;
        try
        {
            await using IsolatedProcess process = spec.Start(plan.Program, plan.Arguments);
            forwarder.Attach(process);
            status = process.WaitForExit(); // blocking: this thread reads the exit record itself, one hand-off fewer
            SandboxFlags.ReportTermination(status, process);
        }
        catch (SandboxSetupException e)
        {
            Console.Error.WriteLine($"isolate: {e.Message}");
            // unshare: errexec() exits 127 when the program is missing, 126 when it cannot run; any other failure is 1.
            return e.Step == SetupStep.Exec ? (e.ErrnoName == "ENOENT" ? 127 : 126) : 1;
        }
        finally
        {
            foreach (PosixSignalRegistration registration in registrations)
                registration.Dispose();
        }

        if (status.Signal == 0)
            return status.ExitCode;
        // unshare: "Ensure the signal that terminated the child will also terminate the parent."
        loggerFactory?.Dispose();
        Console.Out.Flush();
        Console.Error.Flush();
        DieBySignal(status.Signal);
        return status.ShellExitCode; // a signal that does not terminate by default (cannot end a child, but be safe)
    }

    /// <summary>Forwards signals to the program; one that arrives while Start is still returning is delivered once it has.</summary>
    private sealed class SignalForwarder
    {
        private readonly Lock _lock = new();
        private IsolatedProcess? _process;
        private readonly List<int> _pending = [];

        public void Forward(int signal)
        {
            lock (_lock)
            {
                if (_process is null)
                    _pending.Add(signal);
                else
                    _process.Signal(signal);
            }
        }

        public void Attach(IsolatedProcess process)
        {
            lock (_lock)
            {
                _process = process;
                foreach (int signal in _pending)
                    process.Signal(signal);
            }
        }
    }

    private const int SIGHUP = 1;
    private const int SIGTERM = 15;
    private const int SIGKILL = 9;

    /// <summary>Resets the signal's disposition to the default (the runtime handles some), unblocks it and raises it.</summary>
    private static void DieBySignal(int signal)
    {
        if (signal != SIGKILL)
        {
            SignalNative.signal(signal, 0 /* SIG_DFL */);
            SignalNative.sigrelse(signal);
        }
        SignalNative.raise(signal);
    }

    private static class SignalNative
    {
        [DllImport("libc")]
        public static extern nint signal(int signum, nint handler);

        [DllImport("libc")]
        public static extern int sigrelse(int sig);

        [DllImport("libc")]
        public static extern int raise(int sig);
    }
}
