using System.Collections.Immutable;
using System.Runtime.InteropServices;
using Isolation.Interop;
using Microsoft.Win32.SafeHandles;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation.Joining;

/// <summary>
/// One <see cref="NamespaceBuilder.JoinNamespace(Namespaces, string)"/> (or <c>JoinUserNamespaceAfterSetup</c>) as the
/// builder records it: the kind, and the path or the caller's handle. Nothing is opened until <c>Build()</c>.
/// </summary>
internal sealed record NamespaceJoin(Namespaces Kind, string? Path, SafeHandle? Handle, bool AfterSetup)
{
    /// <summary>The builder call, as error messages name it.</summary>
    public string Call => AfterSetup ? "JoinUserNamespaceAfterSetup(...)" : $"JoinNamespace(Namespaces.{Kind}, ...)";

    /// <summary>"user", "PID", "network"...: the kind as prose.</summary>
    public static string KindName(Namespaces kind) => kind switch
    {
        Namespaces.User => "user",
        Namespaces.Pid => "PID",
        Namespaces.Mount => "mount",
        Namespaces.Net => "network",
        Namespaces.Ipc => "IPC",
        Namespaces.Uts => "UTS",
        Namespaces.Cgroup => "cgroup",
        Namespaces.Time => "time",
        _ => kind.ToString(),
    };

    /// <summary>The kind's file in <c>/proc/PID/ns/</c>.</summary>
    public static string ProcName(Namespaces kind) => kind switch
    {
        Namespaces.Mount => "mnt",
        Namespaces.Net => "net",
        _ => kind.ToString().ToLowerInvariant(),
    };
}

/// <summary>
/// The namespaces a spec joins, opened once at <c>Build()</c> and held by the spec for its lifetime: a path is opened
/// then, a handle duplicated then, and each is checked to be a namespace of its kind (<c>NS_GET_NSTYPE</c>). So a spec
/// always joins the namespace that was there at <c>Build()</c> — a holder that exits later, or a pid reused by another
/// process, changes nothing (a PID namespace whose init has exited takes no new process, though: Start then says so).
/// Each start sends the descriptors to the spawn helper (<c>ISO_FD_JOIN</c>), whose trampoline joins them before the
/// child is created (child_join.c). Released by <see cref="IsolationSpec.Dispose"/>, or when the spec is collected.
/// </summary>
internal sealed class OpenedJoins : IDisposable
{
    private readonly (NamespaceJoin Join, SafeFileHandle Handle, string Source)[] _opened;

    private OpenedJoins((NamespaceJoin, SafeFileHandle, string)[] opened) => _opened = opened;

    /// <summary>Opens every join; null when there is none. Throws <see cref="ArgumentException"/> naming the path or descriptor, with nothing left open.</summary>
    public static OpenedJoins? Open(ImmutableArray<NamespaceJoin> joins)
    {
        if (joins.IsDefaultOrEmpty)
            return null;
        var opened = new List<(NamespaceJoin, SafeFileHandle, string)>();
        try
        {
            foreach (NamespaceJoin join in joins)
            {
                (SafeFileHandle handle, string source) = OpenOne(join);
                opened.Add((join, handle, source));
            }
            return new OpenedJoins([.. opened]);
        }
        catch
        {
            foreach ((_, SafeFileHandle handle, _) in opened)
                handle.Dispose();
            throw;
        }
    }

    /// <summary>Closes every descriptor (no start may be using them: IsolationSpec.Lifetime.cs).</summary>
    public void Dispose()
    {
        foreach ((_, SafeFileHandle handle, _) in _opened)
            handle.Dispose();
    }

    /// <summary>The descriptors to send with each start: (role arg, descriptor), in the order given.</summary>
    public IEnumerable<(bool AfterSetup, int Type, int Fd)> Descriptors =>
        _opened.Select(o => (o.Join.AfterSetup, (int)o.Join.Kind, (int)o.Handle.DangerousGetHandle()));

    /// <summary>The join of this kind (before setup), or null.</summary>
    public (NamespaceJoin Join, string Source)? Find(Namespaces kind, bool afterSetup = false) =>
        _opened.Where(o => o.Join.Kind == kind && o.Join.AfterSetup == afterSetup).Select(o => ((NamespaceJoin, string)?)(o.Join, o.Source)).FirstOrDefault();

    private static (SafeFileHandle Handle, string Source) OpenOne(NamespaceJoin join)
    {
        string kind = NamespaceJoin.KindName(join.Kind);
        string procFile = $"/proc/PID/ns/{NamespaceJoin.ProcName(join.Kind)}";
        int fd;
        string source;
        if (join.Path is { } path)
        {
            source = $"'{path}'";
            fd = open_path(path, O_RDONLY | O_CLOEXEC, 0);
            if (fd < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                throw new ArgumentException($"{join.Call}: cannot open {source}: {Errnos.Describe(errno)}. " + (errno switch
                {
                    _ when errno == ENOENT => $"Give an existing {procFile} (or a bind mount of one); the process that held it may have exited.",
                    _ when errno == EACCES || errno == EPERM => "Opening another process's namespace files needs ptrace access to it (the same uid, or CAP_SYS_PTRACE).",
                    _ => $"Give {procFile} of the process whose {kind} namespace to join, or a bind mount of it.",
                }));
            }
        }
        else
        {
            SafeHandle handle = join.Handle!;
            ObjectDisposedException.ThrowIf(handle.IsClosed, handle);
            if (handle.IsInvalid)
                throw new ArgumentException($"{join.Call}: the handle is invalid; pass an open descriptor of {procFile}.");
            bool added = false;
            try
            {
                handle.DangerousAddRef(ref added);
                int theirs = (int)handle.DangerousGetHandle();
                source = $"descriptor {theirs}";
                fd = fcntl(theirs, F_DUPFD_CLOEXEC, 3); // our own copy: the caller may close theirs after Build()
                if (fd < 0)
                    throw new ArgumentException($"{join.Call}: cannot duplicate {source}: {Errnos.Describe(Marshal.GetLastPInvokeError())}.");
            }
            finally
            {
                if (added)
                    handle.DangerousRelease();
            }
        }
        var owned = new SafeFileHandle(fd, ownsHandle: true);
        int type = ioctl_nstype(fd, NS_GET_NSTYPE);
        if (type == (int)join.Kind)
            return (owned, source);
        int error = Marshal.GetLastPInvokeError();
        owned.Dispose();
        if (type < 0)
            throw new ArgumentException($"{join.Call}: {source} is not a namespace file (NS_GET_NSTYPE: {Errnos.Describe(error)}). Give {procFile} of the process whose {kind} namespace to join, or a bind mount of it.");
        throw new ArgumentException($"{join.Call}: {source} is a {NamespaceJoin.KindName((Namespaces)type)} namespace, not a {kind} namespace. Give {procFile}.");
    }
}
