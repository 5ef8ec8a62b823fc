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

    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    private struct EpollEventX64
    {
        public uint Events;
        public ulong Data;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct EpollEventArm64
    {
        public uint Events;
        public ulong Data;
    }

    // epoll_event is packed on x86-64 only.
    private static readonly bool s_packed = RuntimeInformation.ProcessArchitecture == Architecture.X64;

    /// <summary>
    /// Watches <paramref name="pidfd"/> until it becomes readable, then calls <see cref="IsolatedProcess.OnWatcherEvent"/>
    /// once (EPOLLONESHOT). The process keeps the pidfd open until that call, so the event always comes. The epoll entry carries a GC handle to the process, so registering allocates nothing managed.
    /// </summary>
    public static void Register(IsolatedProcess process, int pidfd)
    {
        EnsureStarted();
        GCHandle handle = GCHandle.Alloc(process);
        ulong data = (ulong)(nint)GCHandle.ToIntPtr(handle);
        int rc;
        if (s_packed)
        {
            var ev = new EpollEventX64 { Events = (uint)(EPOLLIN | EPOLLONESHOT), Data = data };
            rc = EpollCtl(s_epoll, 1 /* EPOLL_CTL_ADD */, pidfd, &ev);
        }
        else
        {
            var ev = new EpollEventArm64 { Events = (uint)(EPOLLIN | EPOLLONESHOT), Data = data };
            rc = EpollCtl(s_epoll, 1, pidfd, &ev);
        }
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
        int stride = s_packed ? 12 : 16;
        while (true)
        {
            int n = EpollWait(s_epoll, events, MaxEvents, -1);
            if (n < 0)
                continue; // EINTR
            for (int i = 0; i < n; i++)
            {
                // EPOLLONESHOT: the entry is disarmed; it goes away when the process closes its pidfd.
                var handle = GCHandle.FromIntPtr((nint)(*(ulong*)(events + i * stride + 4 + (s_packed ? 0 : 4))));
                var process = (IsolatedProcess)handle.Target!;
                handle.Free();
                process.OnWatcherEvent();
            }
        }
    }
}
