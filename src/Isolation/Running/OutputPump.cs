using System.Buffers;
using System.IO.Pipes;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading.Channels;
using Microsoft.Win32.SafeHandles;
using static Isolation.Interop.Interop;

namespace Isolation.Running;

/// <summary>Where the bytes of one output stream go: a capture, a caller's stream, or lines on a channel.</summary>
internal abstract class OutputSink(long cap)
{
    private long _kept;

    /// <summary>Whether bytes were read and discarded past the cap.</summary>
    public bool Truncated { get; private set; }

    /// <summary>Pump thread: keeps up to the cap, counts the rest as discarded (the pipe is drained either way).</summary>
    public void Accept(ReadOnlySpan<byte> bytes)
    {
        long room = cap - _kept;
        if (bytes.Length > room)
        {
            Truncated = true;
            bytes = bytes[..(int)Math.Max(0, room)];
        }
        if (bytes.Length == 0)
            return;
        _kept += bytes.Length;
        Write(bytes);
    }

    protected abstract void Write(ReadOnlySpan<byte> bytes);

    /// <summary>Pump thread: the stream reached end of file.</summary>
    public virtual void Complete()
    {
    }
}

/// <summary>Keeps the bytes in memory (SandboxResult.StandardOutput).</summary>
internal sealed class CaptureSink(long cap) : OutputSink(cap)
{
    private readonly MemoryStream _buffer = new();

    protected override void Write(ReadOnlySpan<byte> bytes) => _buffer.Write(bytes);

    public ReadOnlyMemory<byte> Bytes => _buffer.GetBuffer().AsMemory(0, (int)_buffer.Length);
}

/// <summary>Copies the bytes to the caller's stream, synchronously on the pump thread.</summary>
internal sealed class StreamSink(Stream target, long cap) : OutputSink(cap)
{
    protected override void Write(ReadOnlySpan<byte> bytes) => target.Write(bytes);

    public override void Complete() => target.Flush();
}

/// <summary>Splits the bytes into lines ('\n', a trailing '\r' dropped) and posts each as an event (ListenAsync).</summary>
internal sealed class LineSink(ChannelWriter<SandboxEvent> events, bool error, Encoding encoding, long cap, CancellationToken abort) : OutputSink(cap)
{
    private readonly Decoder _decoder = encoding.GetDecoder();
    private readonly StringBuilder _line = new();
    private char[] _chars = new char[4096];

    protected override void Write(ReadOnlySpan<byte> bytes)
    {
        int needed = _decoder.GetCharCount(bytes, flush: false);
        if (_chars.Length < needed)
            _chars = new char[needed];
        int n = _decoder.GetChars(bytes, _chars, flush: false);
        int start = 0;
        for (int i = 0; i < n; i++)
        {
            if (_chars[i] != '\n')
                continue;
            _line.Append(_chars, start, i - start);
            Post();
            start = i + 1;
        }
        _line.Append(_chars, start, n - start);
    }

    public override void Complete()
    {
        int n = _decoder.GetChars([], _chars, flush: true);
        _line.Append(_chars, 0, n);
        if (_line.Length > 0)
            Post();
    }

    private void Post()
    {
        if (_line.Length > 0 && _line[^1] == '\r')
            _line.Length--;
        string text = _line.ToString();
        _line.Clear();
        SandboxEvent e = error ? new StandardErrorLine(text) : new StandardOutputLine(text);
        // Back-pressure: a slow consumer slows the pump (and so the program), it never grows memory without bound.
        if (!events.TryWrite(e))
            events.WriteAsync(e, abort).AsTask().GetAwaiter().GetResult();
    }
}

/// <summary>
/// Drains a sandbox's standard output and error on one thread with poll(2): both pipes at once, so a program
/// that fills one while we would be blocked reading the other never stalls, and past a sink's cap the bytes
/// are still read (and dropped), so the program never blocks on a full pipe. Aborting stops it within
/// <see cref="PollMs"/> even when a descendant still holds a pipe open.
/// </summary>
internal sealed unsafe class OutputPump
{
    private const int PollMs = 100;
    private const int BufferSize = 64 * 1024;

    private readonly (SafePipeHandle Handle, OutputSink Sink)[] _streams;
    private readonly CancellationTokenSource _abort;

    /// <summary>Pumps <paramref name="output"/> into <paramref name="outputSink"/> and <paramref name="error"/> into
    /// <paramref name="errorSink"/>; <paramref name="abort"/> is cancelled by <see cref="Abort"/> (line sinks wait on it).</summary>
    public OutputPump(Stream? output, OutputSink? outputSink, Stream? error, OutputSink? errorSink, CancellationTokenSource? abort = null)
    {
        _abort = abort ?? new CancellationTokenSource();
        var streams = new List<(SafePipeHandle, OutputSink)>(2);
        if (output is PipeStream o && outputSink is not null)
            streams.Add((o.SafePipeHandle, outputSink));
        if (error is PipeStream e && errorSink is not null)
            streams.Add((e.SafePipeHandle, errorSink));
        _streams = [.. streams];
    }

    /// <summary>Runs the pump on a thread of its own; the task ends at end of file on every pipe, or on abort.</summary>
    public Task Start() => Task.Factory.StartNew(static p => ((OutputPump)p!).Run(), this,
        CancellationToken.None, TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach, TaskScheduler.Default);

    /// <summary>Stops reading (the rest of the output is not wanted: the run was cancelled or is over).</summary>
    public void Abort() => _abort.Cancel();

    private void Run()
    {
        int count = _streams.Length;
        bool[] added = new bool[count];
        byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        pollfd* fds = stackalloc pollfd[2];
        int* which = stackalloc int[2];
        try
        {
            // The handles stay open while we read, even if the process is disposed meanwhile (its Release closes them).
            for (int i = 0; i < count; i++)
                _streams[i].Handle.DangerousAddRef(ref added[i]);
            bool[] open = new bool[count];
            Array.Fill(open, true);
            int remaining = count;
            while (remaining > 0 && !_abort.IsCancellationRequested)
            {
                int n = 0;
                for (int i = 0; i < count; i++)
                {
                    if (!open[i])
                        continue;
                    fds[n] = new pollfd { fd = (int)_streams[i].Handle.DangerousGetHandle(), events = POLLIN };
                    which[n++] = i;
                }
                int ready = poll(fds, (nuint)n, PollMs);
                if (ready < 0 && Marshal.GetLastPInvokeError() == Tmds.Linux.LibC.EINTR)
                    continue;
                if (ready < 0)
                    throw new IOException($"poll on the sandbox's output pipes failed: {Interop.Errnos.Describe(Marshal.GetLastPInvokeError())}");
                for (int k = 0; k < n; k++)
                {
                    if ((fds[k].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) == 0)
                        continue;
                    int i = which[k];
                    nint got;
                    fixed (byte* b = buffer)
                        got = read_fd(fds[k].fd, b, BufferSize);
                    if (got > 0)
                    {
                        _streams[i].Sink.Accept(buffer.AsSpan(0, (int)got));
                        continue;
                    }
                    int err = got < 0 ? Marshal.GetLastPInvokeError() : 0;
                    if (got < 0 && (err == Tmds.Linux.LibC.EINTR || err == Tmds.Linux.LibC.EAGAIN))
                        continue;
                    open[i] = false; // end of file: every writer is gone
                    remaining--;
                    _streams[i].Sink.Complete();
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            for (int i = 0; i < count; i++)
            {
                if (added[i])
                    _streams[i].Handle.DangerousRelease();
            }
        }
    }
}

/// <summary>
/// Writes a run's standard input on a thread of its own, then closes the pipe (end of file). The pipe is
/// non-blocking and polled, so a program that never reads its input does not hold the feeder for ever: it
/// stops on abort, and a program that closed its input (EPIPE) simply ends the feed.
/// </summary>
internal sealed unsafe class InputFeeder(Stream source, AnonymousPipeClientStream pipe)
{
    private const int PollMs = 100;
    private volatile bool _aborted;

    public Task Start() => Task.Factory.StartNew(static f => ((InputFeeder)f!).Run(), this,
        CancellationToken.None, TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach, TaskScheduler.Default);

    public void Abort() => _aborted = true;

    private void Run()
    {
        SafePipeHandle handle = pipe.SafePipeHandle;
        bool added = false;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            handle.DangerousAddRef(ref added);
            int fd = (int)handle.DangerousGetHandle();
            int flags = Tmds.Linux.LibC.fcntl(fd, Tmds.Linux.LibC.F_GETFL);
            Tmds.Linux.LibC.fcntl(fd, Tmds.Linux.LibC.F_SETFL, flags | Tmds.Linux.LibC.O_NONBLOCK);
            int n;
            while (!_aborted && (n = source.Read(buffer)) > 0)
            {
                if (!WriteAll(fd, buffer.AsSpan(0, n)))
                    return;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            if (added)
                handle.DangerousRelease();
            pipe.Dispose(); // end of file for the program
        }
    }

    /// <summary>False when the program will read no more (EPIPE) or the feed was aborted.</summary>
    private bool WriteAll(int fd, ReadOnlySpan<byte> bytes)
    {
        while (bytes.Length > 0)
        {
            if (_aborted)
                return false;
            nint written;
            fixed (byte* b = bytes)
                written = write_fd(fd, b, (nuint)bytes.Length);
            if (written > 0)
            {
                bytes = bytes[(int)written..];
                continue;
            }
            int err = Marshal.GetLastPInvokeError();
            if (err == Tmds.Linux.LibC.EPIPE)
                return false;
            if (err != Tmds.Linux.LibC.EAGAIN && err != Tmds.Linux.LibC.EINTR)
                throw new IOException($"writing the sandbox's standard input failed: {Interop.Errnos.Describe(err)}");
            pollfd p = new() { fd = fd, events = POLLOUT };
            poll(&p, 1, PollMs);
        }
        return true;
    }
}
