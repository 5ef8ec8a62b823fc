using Isolation.Diagnostics;

namespace Isolate;

/// <summary><c>isolate probe [--json]</c>: what this host lets this caller do, and the fix for each "no" (HostCapabilities).</summary>
internal static class ProbeCommand
{
    public static int Run(string[] args)
    {
        bool json = false;
        foreach (string arg in args)
        {
            if (arg == "--json")
                json = true;
            else
            {
                Console.Error.WriteLine($"isolate probe: unknown option '{arg}'\nusage: isolate probe [--json]");
                return 2;
            }
        }
        HostCapabilities host = HostCapabilities.Probe();
        Console.Out.Write(json ? host.ToJson() + "\n" : host.ToString());
        return 0;
    }
}
