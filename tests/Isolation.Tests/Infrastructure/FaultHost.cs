using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Isolation.TestHost;

namespace Isolation.Tests.Infrastructure;

/// <summary>
/// tests/Isolation.TestHost running as a host under a fault (its HostFaults.cs commands), optionally behind a
/// launcher (<c>unshare --pid --fork</c>, a wrapper that ignores SIGCHLD). Disposing kills whatever of its
/// tree is left, so a failed test leaves nothing running.
/// </summary>
public sealed class FaultHost : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stderr = new();

    private FaultHost(Process process)
    {
        _process = process;
        _process.ErrorDataReceived += (_, e) =>
        {
            lock (_stderr)
            {
                if (e.Data is not null && _stderr.Length < 16384)
                    _stderr.AppendLine(e.Data);
            }
        };
        _process.BeginErrorReadLine();
    }

    /// <summary>The pid of the first process started: the launcher's when there is one, else the host's (its JSON says which is the host).</summary>
    public int Pid => _process.Id;

    /// <summary>What the host wrote to stderr so far (capped), for failure messages.</summary>
    public string Stderr
    {
        get { lock (_stderr) return _stderr.ToString(); }
    }

    /// <summary>Starts <c>[launcher...] isolation-testhost args...</c> with stdout piped to us.</summary>
    public static FaultHost Start(IReadOnlyList<string> launcher, params string[] args)
    {
        string[] command = [.. launcher, TestHostRunner.Executable, .. args];
        var info = new ProcessStartInfo(command[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in command[1..])
            info.ArgumentList.Add(a);
        info.Environment["HOME"] = "/tmp";
        info.Environment["DOTNET_CLI_HOME"] = "/tmp";
        info.Environment["DOTNET_EnableDiagnostics"] = "0"; // a host the test kills would leave its diagnostics socket in /tmp
        return new FaultHost(Process.Start(info)!);
    }

    /// <summary>Runs a host command to its end and returns the JSON it printed; a host that overruns is killed and fails the test.</summary>
    public static T Run<T>(JsonTypeInfo<T> type, TimeSpan timeout, IReadOnlyList<string> launcher, params string[] args)
    {
        using FaultHost host = Start(launcher, args);
        string output = host.WaitForExit(timeout);
        try
        {
            return JsonSerializer.Deserialize(output, type) ?? throw new InvalidOperationException("null");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new Xunit.Sdk.XunitException($"the host printed no outcome ({e.Message}): {output}\nstderr: {host.Stderr}");
        }
    }

    /// <summary>Waits for the host to exit with 0 and returns its stdout.</summary>
    public string WaitForExit(TimeSpan timeout)
    {
        Task<string> output = _process.StandardOutput.ReadToEndAsync();
        if (!WaitForHostExit(timeout))
            throw new Xunit.Sdk.XunitException($"the host did not finish within {timeout.TotalSeconds} s (killed); stderr: {Stderr}");
        Assert.True(_process.ExitCode == 0, $"the host exited with {_process.ExitCode}: {Stderr}");
        // Its stdout ends when the last copy of the pipe's write end closes: a leftover process may hold one.
        if (!output.Wait(TimeSpan.FromSeconds(5)))
            throw new Xunit.Sdk.XunitException("the host exited, but something it left behind still holds its stdout open");
        return output.Result;
    }

    /// <summary>The next line the host prints, within <paramref name="timeout"/>.</summary>
    public string ReadLine(TimeSpan timeout)
    {
        Task<string?> line = _process.StandardOutput.ReadLineAsync();
        if (!line.Wait(timeout) || line.Result is null)
            throw new Xunit.Sdk.XunitException($"the host printed nothing within {timeout.TotalSeconds} s; stderr: {Stderr}");
        return line.Result;
    }

    // Process.WaitForExit() would also wait for the end of the redirected streams, which a leftover that
    // holds a copy of the host's descriptors never gives; HasExited looks at the process alone.
    private bool WaitForHostExit(TimeSpan timeout) => SpinWait.SpinUntil(() => _process.HasExited, timeout);

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                WaitForHostExit(TimeSpan.FromSeconds(10));
            }
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
        _process.Dispose();
    }
}
