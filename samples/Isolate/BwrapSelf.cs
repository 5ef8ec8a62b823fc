namespace Isolate;

/// <summary>
/// bwrap's program <c>/proc/self/exe</c>: in bwrap the sandbox's first process is a fork of bwrap, so
/// <c>/proc/self/exe</c> there is bwrap itself, and scripts (bubblewrap's own tests among them) run a nested bwrap
/// that way when bwrap's path is not reachable from the sandbox's user namespace. isolate's program is executed by
/// a child of the library's spawn helper, where <c>/proc/self/exe</c> is <c>isolation-helper</c>; so isolate runs
/// itself instead: the same executable, by its path, in bwrap mode (<c>bwrap</c> inserted as its first argument).
/// </summary>
/// <remarks>
/// By path, not by a descriptor: the sandbox sees the executable only if its mounts show it (as with
/// <c>--bind / /</c>), so it gains nothing it could not already execute; and a nested isolate needs its
/// directory anyway (the spawn helper and the native library are beside it). Where the sandbox does not show it,
/// the exec fails with ENOENT and the message says why. Unlike bwrap, it does not need <c>/proc</c> in the sandbox.
/// </remarks>
internal static class BwrapSelf
{
    public const string SelfExe = "/proc/self/exe";

    /// <summary>
    /// When <paramref name="program"/> is <c>/proc/self/exe</c>: the path to execute instead (this isolate), with
    /// <paramref name="argv0"/> kept as the command line gave it (bwrap's nested copy sees <c>/proc/self/exe</c>, or
    /// <c>--argv0</c>) and the arguments that make isolate bwrap. Null otherwise.
    /// </summary>
    public static (string Program, string Argv0, List<string> Arguments)? Resolve(string program, string? argv0, List<string> arguments)
    {
        if (program != SelfExe || Environment.ProcessPath is not { } self)
            return null;
        argv0 ??= SelfExe;
        List<string> args = [.. arguments];
        // isolate invoked by a name that ends in "bwrap" is bwrap already (BwrapCommand.InvokedAs); else it is told.
        if (Path.GetFileName(argv0) != "bwrap")
            args.Insert(0, "bwrap");
        // Run by `dotnet isolate.dll`: the muxer needs the assembly first.
        if (Path.GetFileName(self) == "dotnet")
            args.Insert(0, Path.Combine(AppContext.BaseDirectory, "isolate.dll"));
        return (self, argv0, args);
    }

    /// <summary>An exec failure's message when the program was isolate itself standing for /proc/self/exe: named as given, and why.</summary>
    public static string Explain(string message, string self) =>
        message.StartsWith($"execvp {self}: ", StringComparison.Ordinal)
            ? $"execvp {SelfExe}: {message[($"execvp {self}: ".Length)..]} (isolate runs itself for {SelfExe}, {self}, which the sandbox does not show: bind it in)"
            : message;
}
