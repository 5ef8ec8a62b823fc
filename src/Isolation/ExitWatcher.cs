using System.Runtime.InteropServices;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>
/// One background thread waits, with epoll, on the pidfds of every live sandbox and reaps each as it
/// exits. A pidfd becomes readable when its process exits (pidfd_open(2)), so no thread or signal
/// handler is spent per process and SIGCHLD is left to the runtime.
/// </summary>
internal static unsafe class ExitWatcher
{
    private static readonly Lock s_lock = new();
    private static int s_epoll = -1;

    // struct epoll_event { uint32_t events; uint64_t data; } is packed on x86-64 only (12 bytes, data at 4);
    // elsewhere it has natural alignment (16 bytes, data at 8).
    private static readonly int s_dataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;
    private static readonly int s_eventSize = s_dataOffset == 4 ? 12 : 16;

    /// <summary>
    /// Watches <paramref name="pidfd"/> until it becomes readable, then calls <see cref="IsolatedProcess.OnWatcherEvent"/>
    /// once (EPOLLONESHOT). The process keeps the pidfd open until that call, so the event always comes. The epoll entry carries a GC handle to the process, so registering allocates nothing managed.
    /// </summary>
    public static void Register(IsolatedProcess process, int pidfd)
    {
        EnsureStarted();
        GCHandle handle = GCHandle.Alloc(process);
        byte* ev = stackalloc byte[16];
        *(uint*)ev = (uint)(EPOLLIN | EPOLLONESHOT);
        *(ulong*)(ev + s_dataOffset) = (ulong)(nint)GCHandle.ToIntPtr(handle);
        int rc = EpollCtl(s_epoll, 1 /* EPOLL_CTL_ADD */, pidfd, ev);
        if (rc != 0)
        {
            int error = Marshal.GetLastPInvokeError();
            handle.Free();
            throw new InvalidOperationException($"epoll_ctl(ADD) for a pidfd failed: {Interop.Errnos.Describe(error)}");
        }
    }

    [DllImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    private static extern int EpollCtl(int epfd, int op, int fd, void* ev);

    [DllImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    private static extern int EpollWait(int epfd, void* events, int maxEvents, int timeout);

    private static void EnsureStarted()
    {
        if (Volatile.Read(ref s_epoll) >= 0)
            return;
        lock (s_lock)
        {
            if (s_epoll >= 0)
                return;
            int fd = epoll_create1(EPOLL_CLOEXEC);
            if (fd < 0)
                throw new InvalidOperationException($"epoll_create1 failed: {Interop.Errnos.Describe(errno)}");
            var thread = new Thread(Run) { IsBackground = true, Name = "Isolation exit watcher" };
            Volatile.Write(ref s_epoll, fd);
            thread.Start();
        }
    }

    private static void Run()
    {
        const int MaxEvents = 64;
        byte* events = stackalloc byte[MaxEvents * 16];
        while (true)
        {
            int n = EpollWait(s_epoll, events, MaxEvents, -1);
            if (n < 0)
                continue; // EINTR
            for (int i = 0; i < n; i++)
            {
                // EPOLLONESHOT: the entry is disarmed; it goes away when the process closes its pidfd.
                var handle = GCHandle.FromIntPtr((nint)(*(ulong*)(events + i * s_eventSize + s_dataOffset)));
                var process = (IsolatedProcess)handle.Target!;
                handle.Free();
                process.OnWatcherEvent();
            }
        }
    }
}
