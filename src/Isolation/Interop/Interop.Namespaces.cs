using System.Runtime.InteropServices;

namespace Isolation.Interop;

/// <summary>Namespace files (ioctl_ns(2)), for joining them (Joining/).</summary>
internal static unsafe partial class Interop
{
    /// <summary>ioctl_ns(2), Linux 4.11: the <c>CLONE_NEW*</c> type of the namespace a descriptor refers to.</summary>
    internal const uint NS_GET_NSTYPE = 0xb703;

    /// <returns>The <c>CLONE_NEW*</c> type of the namespace <paramref name="fd"/> refers to; -1 with errno (ENOTTY: not a namespace file).</returns>
    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    internal static partial int ioctl_nstype(int fd, nuint request);
}
