using System.Runtime.InteropServices;

namespace Isolation.Interop;

/// <summary>libc calls for draining and feeding a sandbox's pipes from one thread (Running/OutputPump.cs).</summary>
internal static unsafe partial class Interop
{
    internal const short POLLIN = 0x001, POLLOUT = 0x004, POLLERR = 0x008, POLLHUP = 0x010, POLLNVAL = 0x020;

#pragma warning disable CS8981 // struct pollfd keeps its C name (poll(2))
    [StructLayout(LayoutKind.Sequential)]
    internal struct pollfd
    {
        public int fd;
        public short events;
        public short revents;
    }
#pragma warning restore CS8981

    /// <returns>The number of descriptors with events; 0 when <paramref name="timeoutMs"/> passed first; -1 with errno (EINTR: retry).</returns>
    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    internal static partial int poll(pollfd* fds, nuint nfds, int timeoutMs);

    /// <returns>Bytes read; 0 at end of file; -1 with errno (EAGAIN on an empty non-blocking pipe).</returns>
    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    internal static partial nint read_fd(int fd, byte* buffer, nuint count);

    /// <returns>Bytes written; -1 with errno (EAGAIN on a full non-blocking pipe, EPIPE when no reader is left).</returns>
    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    internal static partial nint write_fd(int fd, byte* buffer, nuint count);
}
