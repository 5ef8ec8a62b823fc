namespace Isolation.TestHost;

/// <summary>
/// <c>isolation-testhost prepared-helper</c>: a fresh host calls <see cref="IsolationSpec.PrepareSpawnHelper"/>, then
/// prints the spawn helpers among its children before any start (<c>before-start PID...</c>), then starts one
/// sandbox and prints the process it is a child of (<c>sandbox-parent PID</c>).
/// </summary>
internal static class PreparedHelper
{
    public static int Run()
    {
        IsolationSpec.PrepareSpawnHelper();
        IsolationSpec.PrepareSpawnHelper(); // a second call starts no second helper
        int[] helpers = [.. ProcessTable.Snapshot().Where(e => e.ParentPid == Environment.ProcessId && e.Executable.EndsWith("/isolation-helper", StringComparison.Ordinal)).Select(e => e.Pid)];
        Console.Out.WriteLine($"before-start {string.Join(' ', helpers)}");
        using IsolatedProcess sandbox = new NamespaceBuilder().WithNamespaces(Namespaces.Pid).WithStandardOutput(Stdio.Null).Build().Start("/bin/sleep", "30");
        Console.Out.WriteLine($"sandbox-parent {ProcessTable.Read(sandbox.Id)?.ParentPid}");
        sandbox.Kill();
        sandbox.WaitForExit();
        return 0;
    }
}
