using System.Runtime.InteropServices;
using static Isolation.Interop.Interop;

namespace Isolation.Tests.Unit;

/// <summary>
/// The child's error pipe (DESIGN.md §2): one fixed-size {step, op index, errno, detail} record means a failed
/// setup, EOF alone means execve succeeded, and anything in between (a record cut short) is a failure, never a
/// success. IsolationNative_WaitExec reads a real pipe here; only the writer is played by the test.
/// </summary>
public sealed unsafe partial class ErrorRecordTests
{
    private static int WaitExecAfterWriting(ReadOnlySpan<byte> written, out iso_child_error error)
    {
        int* fds = stackalloc int[2];
        Assert.Equal(0, pipe(fds));
        fixed (byte* p = written)
            Assert.Equal(written.Length, (int)write(fds[1], p, (nuint)written.Length));
        close(fds[1]);
        iso_child_error e;
        int rc = IsolationNative_WaitExec(fds[0], &e); // closes the read end
        error = e;
        return rc;
    }

    [Fact]
    public void EOF_alone_means_the_child_reached_execve() =>
        Assert.Equal(0, WaitExecAfterWriting([], out _));

    [Fact]
    public void A_whole_record_is_a_failure_with_its_step_and_errno()
    {
        var record = new iso_child_error { step = (int)SetupStep.Mount, op_index = 2, err = 13, detail = 1 };
        int rc = WaitExecAfterWriting(MemoryMarshal.AsBytes(new ReadOnlySpan<iso_child_error>(in record)), out iso_child_error error);
        Assert.Equal(1, rc);
        Assert.Equal((record.step, record.op_index, record.err, record.detail), (error.step, error.op_index, error.err, error.detail));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(15)]
    public void A_short_record_is_a_failure_not_a_success(int length)
    {
        byte[] partial = new byte[length];
        partial.AsSpan().Fill(0x11);
        Assert.Equal(-71 /* EPROTO */, WaitExecAfterWriting(partial, out _));
    }

    [LibraryImport("libc")] private static partial int pipe(int* fds);
    [LibraryImport("libc")] private static partial nint write(int fd, byte* buffer, nuint count);
    [LibraryImport("libc")] private static partial int close(int fd);
}
