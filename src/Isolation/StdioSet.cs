using System.IO.Pipes;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>
/// The descriptors one start sends for stdio: the child's ends (sent to the spawn helper, dup'ed onto 0..2 in
/// the child, closed here once sent) and the host's ends of pipes (handed to <see cref="IsolatedProcess"/> as
/// streams). <see cref="Stdio.Null"/> sends nothing (the helper's own 0..2 are /dev/null); <see cref="Stdio.Inherit"/>
/// sends this process's own descriptor, when it is open. A helper that could not open /dev/null (a nodev /dev, as
/// inside a sandbox that binds the host's /dev without devices) has closed pipes on 0..2 that no sandbox may share:
/// then every slot the helper's stdio would fill gets a pipe of this start's own instead, read at end of file for
/// input, drained and dropped by the host for output (<see cref="Discard"/>), which is what /dev/null does.
/// </summary>
internal unsafe struct StdioSet : IDisposable
{
    private int _child0, _child1, _child2;
    private int _parent0, _parent1, _parent2;

    public StdioSet()
    {
        _child0 = _child1 = _child2 = -1;
        _parent0 = _parent1 = _parent2 = -1;
    }

    private bool _inherit0, _inherit1, _inherit2;

    /// <summary>Opens what <paramref name="choice"/> asks for; <paramref name="helperHasNull"/>: the helper's 0..2 are /dev/null.</summary>
    public void Open(StdioChoice choice, bool helperHasNull = true)
    {
        (_child0, _parent0) = OpenOne(choice.Input, 0, helperHasNull);
        (_child1, _parent1) = OpenOne(choice.Output, 1, helperHasNull);
        (_child2, _parent2) = OpenOne(choice.Error, 2, helperHasNull);
        _inherit0 = choice.Input.Kind == Stdio.StdioKind.Inherit;
        _inherit1 = choice.Output.Kind == Stdio.StdioKind.Inherit;
        _inherit2 = choice.Error.Kind == Stdio.StdioKind.Inherit;
    }

    /// <summary>The descriptor to send for the child's fd <paramref name="which"/>, or -1 to leave the helper's /dev/null.</summary>
    public readonly int ChildFd(int which)
    {
        int opened = which switch { 0 => _child0, 1 => _child1, _ => _child2 };
        bool inherit = which switch { 0 => _inherit0, 1 => _inherit1, _ => _inherit2 };
        if (opened >= 0)
            return opened;
        return inherit && fcntl(which, F_GETFD) >= 0 ? which : -1; // ours to lend, not to close
    }

    private static (int Child, int Parent) OpenOne(Stdio stdio, int which, bool helperHasNull)
    {
        switch (stdio.Kind)
        {
            case Stdio.StdioKind.Null:
            case Stdio.StdioKind.Inherit when fcntl(which, F_GETFD) < 0: // ours is closed: the child gets /dev/null
                return helperHasNull ? (-1, -1) : (NullSubstitute(which), -1); // else the helper's own 0..2 are /dev/null
            case Stdio.StdioKind.File:
                int flags = which == 0 ? O_RDONLY | O_CLOEXEC : O_WRONLY | O_CREAT | O_CLOEXEC | (stdio.Append ? O_APPEND : O_TRUNC);
                return (OpenPath(stdio.Path!, flags, which), -1);
            case Stdio.StdioKind.Pipe:
                int* fds = stackalloc int[2];
                if (pipe2(fds, O_CLOEXEC) != 0)
                    throw new SandboxSetupException(SetupStep.OpenStdio, $"create a pipe for {Name(which)}", errno);
                fds[0] = AboveStdio(fds[0]);
                fds[1] = AboveStdio(fds[1]);
                return which == 0 ? (fds[0], fds[1]) : (fds[1], fds[0]);
            default:
                return (-1, -1);
        }
    }

    /// <summary>
    /// The child's end of a pipe of its own in place of /dev/null: for input a read end whose write end is closed
    /// (end of file at once), for output a write end whose read end the host drains and drops.
    /// </summary>
    private static int NullSubstitute(int which)
    {
        int* fds = stackalloc int[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
            throw new SandboxSetupException(SetupStep.OpenStdio, $"create a pipe for {Name(which)} in place of /dev/null", errno);
        if (which == 0)
        {
            close(fds[1]);
            return AboveStdio(fds[0]);
        }
        int child;
        try
        {
            child = AboveStdio(fds[1]);
        }
        catch
        {
            close(fds[0]);
            throw;
        }
        Discard(AboveStdio(fds[0]));
        return child;
    }

    /// <summary>Reads and drops what arrives on <paramref name="fd"/>, on a thread of its own, until every writer is gone; then closes it.</summary>
    private static void Discard(int fd) => Task.Factory.StartNew(static state =>
    {
        int fd = (int)state!;
        byte* buffer = stackalloc byte[16 * 1024];
        while (read_fd(fd, buffer, 16 * 1024) is var got && (got > 0 || (got < 0 && Marshal.GetLastPInvokeError() == EINTR)))
        {
        }
        close(fd);
    }, fd, CancellationToken.None, TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach, TaskScheduler.Default);

    private static int OpenPath(string path, int flags, int which)
    {
        int length = Encoding.UTF8.GetByteCount(path);
        byte* bytes = stackalloc byte[length + 1];
        Encoding.UTF8.GetBytes(path, new Span<byte>(bytes, length));
        bytes[length] = 0;
        int fd = open(bytes, flags, 0x1A4 /* 0644 */);
        if (fd < 0)
            throw new SandboxSetupException(SetupStep.OpenStdio, $"open {path} for {Name(which)}", errno, path);
        return AboveStdio(fd);
    }

    /// <summary>
    /// Internal descriptors stay at 3 or above even when this process has closed its own stdio: a pipe of ours
    /// on fd 1 would receive the host's console output.
    /// </summary>
    internal static int AboveStdio(int fd)
    {
        if (fd > 2)
            return fd;
        int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        close(fd);
        if (moved < 0)
            throw new SandboxSetupException(SetupStep.OpenStdio, "move a descriptor above stdio", errno);
        return moved;
    }

    private static string Name(int which) => which switch { 0 => "standard input", 1 => "standard output", _ => "standard error" };

    /// <summary>After clone: the child has its copies; the parent's would keep pipes from reaching EOF.</summary>
    public void CloseChildEnds()
    {
        CloseAndClear(ref _child0);
        CloseAndClear(ref _child1);
        CloseAndClear(ref _child2);
    }

    public (Stream? Input, Stream? Output, Stream? Error) TakeStreams()
    {
        Stream? input = Wrap(ref _parent0, PipeDirection.Out);
        Stream? output = Wrap(ref _parent1, PipeDirection.In);
        Stream? error = Wrap(ref _parent2, PipeDirection.In);
        return (input, output, error);
    }

    private static Stream? Wrap(ref int fd, PipeDirection direction)
    {
        if (fd < 0)
            return null;
        var handle = new SafePipeHandle(fd, ownsHandle: true);
        fd = -1;
        return new AnonymousPipeClientStream(direction, handle);
    }

    public void Dispose()
    {
        CloseChildEnds();
        CloseAndClear(ref _parent0);
        CloseAndClear(ref _parent1);
        CloseAndClear(ref _parent2);
    }

    private static void CloseAndClear(ref int fd)
    {
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
}

/// <summary>Where one start's standard input, output and error go: the spec's, or a run's own (IsolationSpec.Run.cs).</summary>
internal readonly record struct StdioChoice(Stdio Input, Stdio Output, Stdio Error);
