using System.Reflection;
using Isolation.Mounts;

namespace Isolation.Tests.Unit;

/// <summary>Modes are UnixFileMode: an int literal such as 755 (decimal, octal 1363) no longer passes silently.</summary>
public sealed class FileModeTests
{
    private static MountOperation Only(Action<MountPlanBuilder> plan) =>
        IsolationSpec.CompileMounts(new NamespaceBuilder().WithNamespaces(Namespaces.Mount).WithMounts(plan).State)
            .Single(o => o.UserIndex == 1).Operation;

    [Fact]
    public void A_tmpfs_mode_given_as_flags_reaches_the_mount_as_octal()
    {
        const UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead
            | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute;
        Assert.Equal("mode=755", Only(m => m.Tmpfs("/t", mode: mode)).Data);
        Assert.Equal("mode=1777", Only(m => m.Tmpfs("/t", mode: mode | UnixFileMode.GroupWrite | UnixFileMode.OtherWrite | UnixFileMode.StickyBit)).Data);
        Assert.Equal("mode=755", Only(m => m.Tmpfs("/t")).Data);
    }

    [Fact]
    public void Dir_file_and_chmod_take_the_mode_bits_as_given()
    {
        Assert.Equal(0x1C0, Only(m => m.Dir("/d", UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute)).N1);
        Assert.Equal(0x1A4, Only(m => m.File("/f", "x")).N1);
        Assert.Equal(0x124, Only(m => m.Chmod("/f", UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead)).N1);
    }

    [Fact]
    public void The_int_overloads_are_obsolete_and_say_why()
    {
        MethodInfo[] intOverloads = [.. typeof(MountPlanBuilder).GetMethods()
            .Where(m => m.GetParameters().Any(p => p.Name == "mode" && p.ParameterType == typeof(int)))];

        Assert.Equal(6, intOverloads.Length); // Tmpfs, Dir, File (text and bytes), FileFromDescriptor, Chmod
        Assert.All(intOverloads, m => Assert.Contains("octal 1363", m.GetCustomAttribute<ObsoleteAttribute>()!.Message));
    }

    [Fact]
    public void A_mode_out_of_range_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new NamespaceBuilder().WithNamespaces(Namespaces.Mount).WithMounts(m => m.Dir("/d", (UnixFileMode)0x1000)));
    }
}
