namespace Isolation.Benchmarks.Infrastructure;

/// <summary>Makes the calling process big: an array with every page touched, so it is resident.</summary>
internal static class Ballast
{
    public static byte[]? Allocate(int mebibytes)
    {
        if (mebibytes <= 0)
            return null;
        byte[] ballast = GC.AllocateUninitializedArray<byte>(mebibytes * 1024 * 1024, pinned: true);
        for (int i = 0; i < ballast.Length; i += 4096)
            ballast[i] = 1;
        return ballast;
    }
}
