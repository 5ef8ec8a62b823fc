using System.Runtime.InteropServices;
using System.Text;

namespace Isolation.Benchmarks.Infrastructure;

/// <summary>
/// The C floor (native/floor.c): one spawn, start to exit, with the library's handshake done in raw
/// system calls and no managed code. P/Invoked so it runs in the same process as the library's rows.
/// </summary>
internal static unsafe partial class Floor
{
    public const int MapRoot = 0x1;
    public const int MountProc = 0x2;
    public const int Loopback = 0x4;

    private const int StackSize = 64 * 1024;

    [LibraryImport("libBenchFloor", EntryPoint = "BenchFloor_Spawn")]
    private static partial int Spawn(byte* path, byte** argv, byte** envp, ulong cloneFlags, int flags, void* stack, nuint stackSize);

    [LibraryImport("libBenchFloor", EntryPoint = "BenchFloor_Start")]
    private static partial int Start(byte* path, byte** argv, byte** envp, ulong cloneFlags, int flags, void* stack, nuint stackSize);

    [LibraryImport("libBenchFloor", EntryPoint = "BenchFloor_Wait")]
    private static partial int Wait(int pidfd);

    /// <summary>A program and its argv laid out once in native memory, so a floor row marshals nothing.</summary>
    public sealed class Command : IDisposable
    {
        private readonly byte* _block;
        private readonly byte** _argv;
        private readonly void* _stack;

        public Command(string path, params string[] arguments)
        {
            string[] argv = [path, .. arguments];
            nuint size = (nuint)((argv.Length + 1) * sizeof(nint));
            foreach (string a in argv)
                size += (nuint)Encoding.UTF8.GetByteCount(a) + 1;
            _block = (byte*)NativeMemory.AllocZeroed(size);
            _argv = (byte**)_block;
            byte* strings = _block + (argv.Length + 1) * sizeof(nint);
            for (int i = 0; i < argv.Length; i++)
            {
                _argv[i] = strings;
                int n = Encoding.UTF8.GetBytes(argv[i], new Span<byte>(strings, Encoding.UTF8.GetByteCount(argv[i])));
                strings[n] = 0;
                strings += n + 1;
            }
            _argv[argv.Length] = null;
            _stack = NativeMemory.AlignedAlloc(StackSize, 16);
            Text = string.Join(' ', argv);
        }

        public string Text { get; }

        /// <summary>Spawns and waits; throws when the program did not exit 0.</summary>
        public void Run(ulong cloneFlags = 0, int flags = 0)
        {
            int rc = Spawn(_argv[0], _argv, null, cloneFlags, flags, _stack, StackSize);
            if (rc != 0)
                throw new InvalidOperationException(rc < 0
                    ? $"floor spawn of '{Text}' failed: errno {-rc}"
                    : $"'{Text}' exited with {rc}");
        }

        /// <summary>Spawns and returns the child's pidfd once it has exec'd; pass it to <see cref="WaitFor"/>.</summary>
        public int StartOnly(ulong cloneFlags = 0, int flags = 0)
        {
            int pidfd = Start(_argv[0], _argv, null, cloneFlags, flags, _stack, StackSize);
            if (pidfd < 0)
                throw new InvalidOperationException($"floor spawn of '{Text}' failed: errno {-pidfd}");
            return pidfd;
        }

        /// <summary>Reaps the child of <see cref="StartOnly"/> (blocking waitid on its pidfd) and closes the pidfd.</summary>
        public static void WaitFor(int pidfd)
        {
            int rc = Wait(pidfd);
            if (rc != 0)
                throw new InvalidOperationException($"floor child ended with {rc}");
        }

        public void Dispose()
        {
            NativeMemory.Free(_block);
            NativeMemory.AlignedFree(_stack);
        }
    }
}
