using System.Diagnostics;
using System.IO.Pipes;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Isolation.Mounts;
using Isolation.Running;

namespace Isolation;

/// <summary>
/// Running a program to its end in one call (<see cref="RunAsync(string, IReadOnlyList{string}, string?, CancellationToken)"/>)
/// or line by line (<see cref="ListenAsync"/>): the plumbing every embedding app would otherwise write — pipes
/// drained concurrently, an output cap, input fed while output is read, the whole sandbox killed on cancellation.
/// </summary>
public sealed partial class IsolationSpec
{
    private static readonly RunOptions s_defaultRun = new();

    /// <summary>
    /// Runs <paramref name="program"/> in a new sandbox to its end and returns its exit status and output. Standard
    /// output and error are read concurrently and kept up to <see cref="RunOptions.DefaultMaxOutputBytes"/> each;
    /// <paramref name="standardInput"/> (UTF-8) is written to the program's standard input, which is otherwise /dev/null.
    /// </summary>
    /// <remarks>
    /// The program's failure is data: a non-zero exit, a signal, the spec's timeout, an OOM kill and the pids limit
    /// are in <see cref="SandboxResult.Status"/>. A failed setup throws <see cref="SandboxSetupException"/> at once.
    /// Cancelling kills the whole sandbox and throws <see cref="OperationCanceledException"/> once it is gone.
    /// </remarks>
    public Task<SandboxResult> RunAsync(string program, IReadOnlyList<string> arguments, string? standardInput = null, CancellationToken cancellationToken = default) =>
        RunAsync(program, arguments, standardInput is null ? s_defaultRun : new RunOptions { StandardInput = standardInput }, cancellationToken);

    /// <summary>Runs <paramref name="program"/> to its end with input, output, cap and per-run settings from <paramref name="options"/>.</summary>
    /// <inheritdoc cref="RunAsync(string, IReadOnlyList{string}, string?, CancellationToken)" path="/remarks"/>
    public async Task<SandboxResult> RunAsync(string program, IReadOnlyList<string> arguments, RunOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        cancellationToken.ThrowIfCancellationRequested();
        IsolationSpec spec = ForRun(options);
        Stream? input = options.OpenInput();
        OutputSink stdoutSink = options.StandardOutputStream is { } o ? new StreamSink(o, options.MaxOutputBytes) : new CaptureSink(options.MaxOutputBytes);
        OutputSink stderrSink = options.StandardErrorStream is { } e ? new StreamSink(e, options.MaxOutputBytes) : new CaptureSink(options.MaxOutputBytes);
        long started = Stopwatch.GetTimestamp();
        IsolatedProcess process = spec.StartCore(program, AsSpan(arguments), new StdioChoice(input is null ? Stdio.Null : Stdio.Pipe, Stdio.Pipe, Stdio.Pipe));
        var pump = new OutputPump(process.StandardOutput, stdoutSink, process.StandardError, stderrSink);
        InputFeeder? feeder = input is null ? null : new InputFeeder(input, (AnonymousPipeClientStream)process.StandardInput!);
        try
        {
            Task pumping = pump.Start();
            _ = feeder?.Start();
            ExitStatus status;
            using (cancellationToken.Register(static p => ((IsolatedProcess)p!).Kill(), process))
                status = await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            TimeSpan runTime = Stopwatch.GetElapsedTime(started);
            cancellationToken.ThrowIfCancellationRequested();
            // The program has gone; its PID namespace or cgroup takes its descendants with it, so the pipes reach
            // end of file. A descendant outside both (no PID namespace, no cgroup) may hold them open: then the
            // run waits for it, as Process does, until cancelled.
            await pumping.WaitAsync(cancellationToken).ConfigureAwait(false);
            return new SandboxResult(status, (stdoutSink as CaptureSink)?.Bytes ?? default, (stderrSink as CaptureSink)?.Bytes ?? default,
                stdoutSink.Truncated || stderrSink.Truncated, process.ResourceUsage ?? default, process.GetCgroupStats(), process.Limits, runTime, options.Encoding);
        }
        finally
        {
            pump.Abort();
            feeder?.Abort();
            await process.DisposeAsync().ConfigureAwait(false); // kills what is left, waits for it, removes the cgroup
        }
    }

    /// <summary>
    /// Runs <paramref name="program"/> and reports its output line by line as it comes (like CliWrap's
    /// <c>ListenAsync</c>): <see cref="SandboxStarted"/>, then <see cref="StandardOutputLine"/> and
    /// <see cref="StandardErrorLine"/> events, then <see cref="SandboxExited"/>.
    /// </summary>
    /// <remarks>
    /// Without input in <paramref name="options"/>, the program's standard input is a pipe handed to you in
    /// <see cref="SandboxStarted.StandardInput"/>: write to it while you read, and dispose it to send end of file.
    /// Stopping the enumeration early, or cancelling, kills the whole sandbox; cancelling throws
    /// <see cref="OperationCanceledException"/> once it is gone. A slow consumer slows the program (the lines
    /// wait in a bounded queue), it never grows memory without bound.
    /// </remarks>
    public async IAsyncEnumerable<SandboxEvent> ListenAsync(string program, IReadOnlyList<string> arguments, RunOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        options ??= s_defaultRun;
        options.Validate();
        cancellationToken.ThrowIfCancellationRequested();
        IsolationSpec spec = ForRun(options);
        Stream? input = options.OpenInput();
        IsolatedProcess process = spec.StartCore(program, AsSpan(arguments), new StdioChoice(Stdio.Pipe, Stdio.Pipe, Stdio.Pipe));
        var events = Channel.CreateBounded<SandboxEvent>(new BoundedChannelOptions(1024) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        OutputPump? pump = null;
        InputFeeder? feeder = null;
        try
        {
            var abort = new CancellationTokenSource(); // no timer: nothing to dispose
            var stdoutSink = new LineSink(events.Writer, error: false, options.Encoding, options.MaxOutputBytes, abort.Token);
            var stderrSink = new LineSink(events.Writer, error: true, options.Encoding, options.MaxOutputBytes, abort.Token);
            pump = new OutputPump(process.StandardOutput, stdoutSink, process.StandardError, stderrSink, abort);
            _ = pump.Start().ContinueWith(static (t, w) => ((ChannelWriter<SandboxEvent>)w!).TryComplete(t.Exception?.InnerException), events.Writer,
                CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            if (input is not null)
                _ = (feeder = new InputFeeder(input, (AnonymousPipeClientStream)process.StandardInput!)).Start();

            yield return new SandboxStarted(process.Id, input is null ? process.StandardInput : null);
            await foreach (SandboxEvent e in events.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                yield return e;
            ExitStatus status = await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
            yield return new SandboxExited(status, process.ResourceUsage ?? default, stdoutSink.Truncated || stderrSink.Truncated);
        }
        finally
        {
            pump?.Abort();
            feeder?.Abort();
            await process.DisposeAsync().ConfigureAwait(false); // early stop or cancellation: kills the sandbox and waits for it
        }
    }

    /// <summary>This spec, or a private copy with the run's environment, working directory, files and timeout.</summary>
    private IsolationSpec ForRun(RunOptions options)
    {
        if (!options.NeedsOwnSpec)
            return this;
        BuilderState state = _state;
        if (options.Environment is { } environment)
        {
            var builder = new EnvironmentBuilder(state.ClearEnvironment, state.EnvironmentChanges);
            foreach ((string name, string? value) in environment)
            {
                if (value is null)
                    builder.Unset(name);
                else
                    builder.Set(name, value);
            }
            state = state with { ClearEnvironment = builder.IsCleared, EnvironmentChanges = [.. builder.Changes] };
        }
        if (options.WorkingDirectory is { } directory)
        {
            MountPlanBuilder.Checked(directory, nameof(options.WorkingDirectory));
            state = state with { WorkingDirectory = directory, WorkingDirectoryFallback = false };
        }
        if (options.Files is { Count: > 0 } files)
        {
            if (!state.Namespaces.HasFlag(Namespaces.Mount))
                throw new ArgumentException("RunOptions.Files requires Namespaces.Mount: the files are made in the sandbox's own mount namespace. Add it to WithNamespaces(...).");
            var mounts = new MountPlanBuilder(state.Mounts, state.Root, state.ReadOnlyRoot, state.Propagation);
            foreach ((string path, byte[] contents) in files)
                mounts.File(path, contents, UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            state = state with { Mounts = [.. mounts.Operations] };
        }
        if (options.Timeout is { } timeout)
        {
            if (timeout <= TimeSpan.Zero || timeout == System.Threading.Timeout.InfiniteTimeSpan)
                throw new ArgumentOutOfRangeException(nameof(options), timeout, "RunOptions.Timeout must be positive.");
            state = state with { Timeout = timeout };
        }
        NamespaceBuilder.Validate(state);
        return new IsolationSpec(state);
    }

    private static ReadOnlySpan<string> AsSpan(IReadOnlyList<string> arguments) => arguments switch
    {
        string[] array => array,
        List<string> list => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(list),
        _ => arguments.ToArray(),
    };
}
