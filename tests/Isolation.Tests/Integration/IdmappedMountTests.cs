using System.Diagnostics;
using Isolation.Tests.Infrastructure;
using Isolation.TestHost;

namespace Isolation.Tests.Integration;

/// <summary>
/// Idmapped binds (mount_setattr(2), MOUNT_ATTR_IDMAP): owners on disk are mapped through the sandbox's own
/// uid/gid maps, so host files keep their owners inside a sandbox whose root is an unprivileged host id.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class IdmappedMountTests
{
    // Root inside is host uid/gid 100000, as in a container engine's user-namespaced container.
    private static readonly NamespaceBuilder Shifted = new NamespaceBuilder()
        .WithNamespaces(Namespaces.User | Namespaces.Mount | Namespaces.Pid)
        .MapUsers(0, 100000, 65536).MapGroups(0, 100000, 65536)
        .RunAs(0, 0);

    private static async Task<string> ShAsync(NamespaceBuilder builder, string script)
    {
        await using IsolatedProcess p = builder.WithStandardOutput(Stdio.Pipe).Build().Start("/bin/sh", "-c", script);
        string output = await new StreamReader(p.StandardOutput!).ReadToEndAsync();
        ExitStatus status = await p.WaitForExitAsync();
        Assert.True(status.Success, $"{status}: {output}");
        return output;
    }

    [Fact]
    public async Task Host_files_keep_their_owners_through_an_idmapped_bind_and_writes_land_as_them()
    {
        Host.RequireRoot();
        string dir = Directory.CreateTempSubdirectory("isolation-idmap-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "owned-by-root"), "x");
            File.SetUnixFileMode(dir, (UnixFileMode)0x1FF);

            // A plain bind: host root's file shows as the overflow id, and root inside (host 100000) cannot write as 0.
            string plain = await ShAsync(Shifted.WithMounts(m => m.Bind(dir, "/mnt/plain")), "stat -c %u:%g /mnt/plain/owned-by-root");
            // Idmapped: on-disk 0 is mapped through the sandbox's map, so it is 0 inside, and a file root creates is 0 on disk.
            string mapped = await ShAsync(Shifted.WithMounts(m => m.IdmappedBind(dir, "/mnt/mapped")),
                "stat -c %u:%g /mnt/mapped/owned-by-root; touch /mnt/mapped/created-inside; stat -c %u /mnt/mapped/created-inside");

            Assert.Equal("65534:65534", plain.Trim());
            Assert.Equal(["0:0", "0"], mapped.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            var created = new FileInfo(Path.Combine(dir, "created-inside"));
            Assert.True(created.Exists);
            Assert.Equal("0", Run("stat", "-c", "%u", created.FullName).Trim()); // host root, not host 100000
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task A_read_only_idmapped_bind_maps_owners_and_refuses_writes()
    {
        Host.RequireRoot();
        string dir = Directory.CreateTempSubdirectory("isolation-idmap-ro-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "f"), "x");
            string output = await ShAsync(Shifted.WithMounts(m => m.IdmappedBind(dir, "/mnt/ro", readOnly: true)).WithSecurity(s => s.DropCapabilities("CAP_SYS_ADMIN")),
                "stat -c %u /mnt/ro/f; touch /mnt/ro/g 2>/dev/null && echo wrote || echo refused; " +
                "/bin/mount -o remount,bind,rw /mnt/ro 2>/dev/null && echo remounted || echo remount-refused; touch /mnt/ro/h 2>/dev/null && echo wrote-h; true");
            Assert.Equal(["0", "refused", "remount-refused"], output.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.False(File.Exists(Path.Combine(dir, "g")));
            Assert.False(File.Exists(Path.Combine(dir, "h")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void A_read_only_idmapped_bind_that_the_program_could_remount_read_write_is_refused_at_build()
    {
        Host.RequireRoot(); // idmapped binds need a privileged caller
        // With CAP_SYS_ADMIN over its mount namespace, the program ran "mount -o remount,bind,rw" on it and
        // created a file in the host directory as host root (the mount is its namespace's own, so not locked).
        var e = Assert.Throws<ArgumentException>(() => Shifted.WithMounts(m => m.IdmappedBind("/tmp", "/mnt/ro", readOnly: true)).Build());

        Assert.Contains("could remount it read-write", e.Message);
        Assert.Contains("DropCapabilities(\"CAP_SYS_ADMIN\")", e.Message);
        Shifted.WithMounts(m => m.IdmappedBind("/tmp", "/mnt/ro", readOnly: true)).WithSecurity(s => s.DropAllCapabilities()).Build();
        Shifted.WithMounts(m => m.IdmappedBind("/tmp", "/mnt/ro", readOnly: true)).RunAs(1000, 1000).Build();
        Shifted.WithMounts(m => m.IdmappedBind("/tmp", "/mnt/rw")).Build();
    }

    [Fact]
    public void An_unprivileged_caller_is_told_before_any_syscall_that_idmapping_a_host_file_system_needs_root()
    {
        Host.RequireUnprivilegedRunner();
        SpawnOutcome outcome = TestHostRunner.SpawnUnprivileged("--ns", "user,mount", "--map-root", "--idmap", "/tmp:/mnt", "--", "/bin/true");

        Assert.False(outcome.Started);
        Assert.NotNull(outcome.ArgumentError);
        Assert.Contains("needs a privileged caller", outcome.ArgumentError);
    }

    private static string Run(string program, params string[] args)
    {
        using Process p = Process.Start(new ProcessStartInfo(program, args) { RedirectStandardOutput = true })!;
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return output;
    }
}
