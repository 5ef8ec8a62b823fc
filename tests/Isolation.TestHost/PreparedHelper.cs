namespace Isolation.TestHost;

/// <summary>
/// <c>isolation-testhost prepared-helper</c>: a fresh host calls <see cref="IsolationSpec.PrepareSpawnHelper"/> twice, then
/// prints the spawn helpers among its children before any start, once one has exec'd (<c>before-start PID...</c>), then starts one
/// sandbox and prints the process it is a child of (<c>sandbox-parent PID</c>).
/// </summary>
internal static class PreparedHelper
{
    public static int Run()
    {
        IsolationSpec.PrepareSpawnHelper();
        IsolationSpec.PrepareSpawnHelper(); // a second call starts no second helper
        // The helper starts on a thread of the library's: wait until it has exec'd (up to 10 s), then a little
        // longer, so that a second one, had it been started, would be there too.
        int[] helpers = [];
        for (int i = 0; i < 1000 && helpers.Length == 0; i++)
        {
            Thread.Sleep(10);
            helpers = Helpers();
        }
        Thread.Sleep(200);
        helpers = Helpers();
        Console.Out.WriteLine($"before-start {string.Join(' ', helpers)}");
        using IsolatedProcess sandbox = new NamespaceBuilder().WithNamespaces(Namespaces.Pid).WithStandardOutput(Stdio.Null).Build().Start("/bin/sleep", "30");
        Console.Out.WriteLine($"sandbox-parent {ProcessTable.Read(sandbox.Id)?.ParentPid}");
        sandbox.Kill();
        sandbox.WaitForExit();
        return 0;
    }

    private static int[] Helpers() =>
        [.. ProcessTable.Snapshot().Where(e => e.ParentPid == Environment.ProcessId && e.Executable.EndsWith("/isolation-helper", StringComparison.Ordinal)).Select(e => e.Pid)];
}
