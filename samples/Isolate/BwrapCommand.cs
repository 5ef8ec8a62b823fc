namespace Isolate;

// Placeholder replaced by the bubblewrap face (issue 3).
internal static class BwrapCommand
{
    public static Task<int> RunAsync(string[] args)
    {
        Console.Error.WriteLine("isolate bwrap: not implemented yet");
        return Task.FromResult(2);
    }
}
