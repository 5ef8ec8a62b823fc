using System.Runtime.InteropServices;

namespace Isolate;

/// <summary>
/// isolate runs with the .NET diagnostics IPC off. Every .NET process listens on
/// <c>$TMPDIR/dotnet-diagnostic-PID-...-socket</c>; a sandbox that sees that directory and runs as the same
/// kernel uid could connect and make isolate load a library or dump its memory — code execution outside the
/// sandbox. The runtime reads the switch only from the environment (runtimeconfig.json has no knob for it),
/// so isolate re-executes itself once with <c>DOTNET_EnableDiagnostics=0</c>, before it starts anything, and
/// then takes the variable out again so that sandboxed programs do not inherit it.
/// </summary>
internal static class DiagnosticsOff
{
    private const string Variable = "DOTNET_EnableDiagnostics";
    private const string Marker = "ISOLATE_DIAGNOSTICS_OFF"; // set by the re-exec: the variable was ours to add

    /// <summary>
    /// Whether this is the NativeAOT build: no host sets the trusted assemblies. (Not RuntimeFeature.IsDynamicCodeSupported:
    /// PublishAot=true makes that false in the JIT build too.)
    /// </summary>
    private static readonly bool s_nativeAot = AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES") is null;

    public static void Ensure(string[] args)
    {
        if (s_nativeAot)
            return; // built with EnableDiagnostics=false, it has no server to turn off
        if (Environment.GetEnvironmentVariable(Marker) == "1")
        {
            Environment.SetEnvironmentVariable(Marker, null);
            Environment.SetEnvironmentVariable(Variable, null);
            RemoveSocketOfRuntimeBefore();
            return;
        }
        if (Environment.GetEnvironmentVariable(Variable) == "0")
            return; // already off (the caller's own choice stays in the environment)
        string self = Environment.ProcessPath ?? "/proc/self/exe";
        string[] argv = [ProgramName() ?? self, .. args]; // argv[0] kept: invoked through a symlink named bwrap, isolate is bwrap
        string[] envp = [.. Environment.GetEnvironmentVariables().Keys.Cast<string>()
            .Where(k => k != Variable && k != Marker)
            .Select(k => $"{k}={Environment.GetEnvironmentVariable(k)}"), $"{Variable}=0", $"{Marker}=1"];
        execve(self, [.. argv, null], [.. envp, null]);
        // execve returned: run on with diagnostics on rather than not at all, and say so.
        Console.Error.WriteLine($"isolate: warning: could not re-execute with {Variable}=0 (errno {Marshal.GetLastPInvokeError()}); the .NET diagnostics socket stays open");
    }

    /// <summary>argv[0] as the process was started with (under the JIT host the runtime's own argument list replaces it with its path; NativeAOT keeps main's).</summary>
    public static string? ProgramName()
    {
        if (s_nativeAot)
            return Environment.GetCommandLineArgs() is [{ Length: > 0 } argv0, ..] ? argv0 : null; // main's own argv
        try
        {
            string cmdline = File.ReadAllText("/proc/self/cmdline");
            int end = cmdline.IndexOf('\0', StringComparison.Ordinal);
            return end > 0 ? cmdline[..end] : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>
    /// The runtime this process ran before the re-exec made its socket, on a thread of its own, perhaps just before
    /// the exec: remove it now that it is gone. The runtime names it by pid and start time (clock ticks after
    /// boot, field 22 of /proc/self/stat), both of which execve keeps; so a socket of an earlier process that had
    /// our pid is left alone.
    /// </summary>
    private static void RemoveSocketOfRuntimeBefore()
    {
        try
        {
            string stat = File.ReadAllText("/proc/self/stat");
            string startTime = stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[19];
            string tmp = Path.GetTempPath();
            File.Delete(Path.Join(tmp, $"dotnet-diagnostic-{Environment.ProcessId}-{startTime}-socket"));
            // The debugger transport's two pipes, named by the same pid and start time.
            File.Delete(Path.Join(tmp, $"clr-debug-pipe-{Environment.ProcessId}-{startTime}-in"));
            File.Delete(Path.Join(tmp, $"clr-debug-pipe-{Environment.ProcessId}-{startTime}-out"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int execve(string path, string?[] argv, string?[] envp);
}
