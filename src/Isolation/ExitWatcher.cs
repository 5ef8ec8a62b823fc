using System.Runtime.InteropServices;
using static Tmds.Linux.LibC;

namespace Isolation;

/// <summary>
/// Background threads wait, with epoll, on the status sockets of every live sandbox and read each one's exit
/// record as the spawn helper sends it (the helper is their parent and reaps them). No thread or signal handler
/// is spent per process, and SIGCHLD is left to the runtime.
/// </summary>
/// <remarks>
/// Leader/follower: one thread (the leader) waits in epoll_wait for one event; when it gets one it hands the
/// wait to a follower (starting one if none is idle) and then completes the waits itself, so an
/// <c>await WaitForExitAsync()</c> continues on the thread the exit woke, with no second hand-off to the thread
/// pool: the async path costs one wake-up, like the blocking one. Whatever a continuation does, it never holds up
/// other sandboxes' exits, since the next leader is already waiting.
/// </remarks>
internal static unsafe class ExitWatcher
{
    private static readonly Lock s_lock = new();
    private static int s_epoll = -1;

    // struct epoll_event { uint32_t events; uint64_t data; } is packed on x86-64 only (12 bytes, data at 4);
    // elsewhere it has natural alignment (16 bytes, data at 8).
    private static readonly int s_dataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;
    private static readonly int s_eventSize = s_dataOffset == 4 ? 12 : 16;

    /// <summary>
    /// Watches the status socket of <paramref name="sandbox"/> until it becomes readable (the exit record, or the
    /// helper's EOF), then calls <see cref="IsolatedProcess.OnWatcherEvent"/> once (EPOLLONESHOT). The watcher holds a
    /// reference on the handle until then (OnWatcherEvent lets go of it), so the socket stays open and the event always comes. The epoll entry
    /// carries a GC handle to the process, so registering allocates nothing managed.
    /// </summary>
    public static void Register(IsolatedProcess process, Spawning.SandboxHandle sandbox)
    {
        EnsureStarted();
        bool added = false;
        sandbox.DangerousAddRef(ref added);
        GCHandle handle = GCHandle.Alloc(process);
        byte* ev = stackalloc byte[16];
        *(uint*)ev = (uint)(EPOLLIN | EPOLLONESHOT);
        *(ulong*)(ev + s_dataOffset) = (ulong)(nint)GCHandle.ToIntPtr(handle);
        int rc = EpollCtl(s_epoll, 1 /* EPOLL_CTL_ADD */, sandbox.StatusFd, ev);
        if (rc != 0)
        {
            int error = Marshal.GetLastPInvokeError();
            handle.Free();
            sandbox.DangerousRelease();
            throw new InvalidOperationException($"epoll_ctl(ADD) for a status socket failed: {Interop.Errnos.Describe(error)}");
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
            Volatile.Write(ref s_epoll, fd);
            StartThread();
        }
    }

    private static readonly object s_turn = new(); // guards the two below; a monitor, for Wait/Pulse
    private static bool s_leading;   // a thread is in epoll_wait
    private static int s_followers;  // threads idle, waiting to lead

    private static void StartThread() =>
        new Thread(Run) { IsBackground = true, Name = "Isolation exit watcher" }.Start();

    private static void Run()
    {
        byte* ev = stackalloc byte[16];
        while (true)
        {
            lock (s_turn)
            {
                while (s_leading)
                {
                    s_followers++;
                    Monitor.Wait(s_turn);
                    s_followers--;
                }
                s_leading = true;
            }
            int n;
            do
                n = EpollWait(s_epoll, ev, 1, -1); // one event: the next one is the next leader's
            while (n <= 0); // EINTR
            lock (s_turn)
            {
                s_leading = false;
                if (s_followers > 0)
                    Monitor.Pulse(s_turn);
                else
                    StartThread(); // once, or when continuations keep threads busy
            }

            // EPOLLONESHOT: the entry is disarmed; it goes away when the status socket is closed.
            var handle = GCHandle.FromIntPtr((nint)(*(ulong*)(ev + s_dataOffset)));
            var process = (IsolatedProcess)handle.Target!;
            handle.Free();
            try
            {
                process.OnWatcherEvent(); // releases the watcher's reference on the handle, completes the waits: continuations run here (see remarks)
            }
            catch (Exception e)
            {
                // A continuation that throws belongs to its task; nothing here may take the watcher down.
                System.Diagnostics.Debug.Fail($"exit watcher: {e}");
            }
        }
    }
}
