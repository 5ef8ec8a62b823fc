using System.Runtime.InteropServices;
using System.Text;

namespace Isolation.Interop;

/// <summary>
/// One native allocation, sized first and then filled front to back (dotnet/runtime's AllocArgvArray
/// pattern): measure every string and array with the static <c>Measure*</c> methods, allocate once, then
/// take pieces in the same order. Every piece is 16-byte aligned; overruns throw.
/// </summary>
internal unsafe struct NativeBlock
{
    private readonly byte* _start;
    private readonly nuint _size;
    private nuint _used;

    private NativeBlock(byte* start, nuint size)
    {
        _start = start;
        _size = size;
        _used = 0;
    }

    /// <summary>Allocates <paramref name="size"/> bytes; zeroed unless the caller writes every piece it takes.</summary>
    public static NativeBlock Allocate(nuint size, bool clear = true)
    {
        byte* start = (byte*)NativeMemory.AlignedAlloc(size == 0 ? 16 : size, 16);
        if (clear)
            NativeMemory.Clear(start, size);
        return new NativeBlock(start, size);
    }

    public readonly byte* Start => _start;

    public static nuint Align(nuint n) => (n + 15) & ~(nuint)15;

    public static nuint MeasureString(string? s) => s is null ? 0 : Align(checked((nuint)Encoding.UTF8.GetByteCount(s) + 1));

    public static nuint MeasureBytes(int count) => Align(checked((nuint)count + 1));

    public static nuint MeasureArray<T>(int count) where T : unmanaged => Align(checked((nuint)count * (nuint)sizeof(T)));

    public void* Take(nuint size)
    {
        size = Align(size);
        if (size > _size - _used)
            throw new InvalidOperationException($"Native block overrun: {size} bytes wanted, {_size - _used} left of {_size}.");
        byte* p = _start + _used;
        _used += size;
        return p;
    }

    public T* TakeArray<T>(int count) where T : unmanaged => (T*)Take(checked((nuint)count * (nuint)sizeof(T)));

    /// <summary>Copies <paramref name="s"/> as NUL-terminated UTF-8; null stays null.</summary>
    public byte* String(string? s)
    {
        if (s is null)
            return null;
        int length = Encoding.UTF8.GetByteCount(s);
        byte* p = (byte*)Take((nuint)length + 1);
        Encoding.UTF8.GetBytes(s, new Span<byte>(p, length));
        p[length] = 0;
        return p;
    }

    /// <summary>Copies raw bytes, NUL-terminated for convenience.</summary>
    public byte* Bytes(ReadOnlySpan<byte> bytes)
    {
        byte* p = (byte*)Take((nuint)bytes.Length + 1);
        bytes.CopyTo(new Span<byte>(p, bytes.Length));
        p[bytes.Length] = 0;
        return p;
    }

    public readonly void Free() => NativeMemory.AlignedFree(_start);
}

/// <summary>Owns a <see cref="NativeBlock"/> for the lifetime of an object (an <see cref="IsolationSpec"/>).</summary>
internal sealed unsafe class NativeBlockHandle : SafeHandle
{
    public NativeBlockHandle(NativeBlock block) : base(IntPtr.Zero, ownsHandle: true) => SetHandle((IntPtr)block.Start);

    public override bool IsInvalid => handle == IntPtr.Zero;

    protected override bool ReleaseHandle()
    {
        NativeMemory.AlignedFree((void*)handle);
        return true;
    }
}
