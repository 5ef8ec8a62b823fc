namespace Isolate;

// Placeholder replaced by the unshare face (issue 2, §7).
internal static class UnshareCommand
{
    public static Task<int> RunAsync(string[] args)
    {
        Console.Error.WriteLine("isolate unshare: not implemented yet");
        return Task.FromResult(2);
    }
}
