using System.Text;
using Isolation.Mounts;

namespace Isolation.Tests.Unit;

/// <summary>How a mount plan compiles into the shim's ops (no kernel involved).</summary>
public sealed class MountPlanTests
{
    private static readonly NamespaceBuilder Sandbox = new NamespaceBuilder()
        .WithNamespaces(Namespaces.User | Namespaces.Mount | Namespaces.Pid)
        .MapCurrentUserToRoot();

    private static IsolationSpec.CompiledOp[] Compile(Action<MountPlanBuilder> plan) =>
        IsolationSpec.CompileMounts(Sandbox.WithMounts(plan).State);

    [Fact]
    public void A_plan_without_a_root_uses_host_paths_after_making_the_root_private()
    {
        IsolationSpec.CompiledOp[] ops = Compile(m => m.Tmpfs("/tmp").Proc());

        Assert.Equal([NativeOpKind.Propagation, NativeOpKind.Mount, NativeOpKind.Mount], ops.Select(o => o.Operation.Kind));
        Assert.Equal([0, 1, 2], ops.Select(o => o.UserIndex));
        Assert.All(ops, o => Assert.False(o.Operation.Flags.HasFlag(NativeOpFlags.InRoot)));
    }

    [Fact]
    public void A_plan_with_a_root_binds_opens_and_pivots_and_resolves_targets_inside_it()
    {
        IsolationSpec.CompiledOp[] ops = Compile(m => m.Root("/images/alpine").Bind("/data", "/mnt/data").Proc());

        Assert.Equal([NativeOpKind.Propagation, NativeOpKind.Bind, NativeOpKind.OpenRoot, NativeOpKind.Bind, NativeOpKind.Mount, NativeOpKind.PivotRoot],
            ops.Select(o => o.Operation.Kind));
        MountOperation bind = ops[3].Operation;
        Assert.Equal("/data", bind.Source);
        Assert.Equal("/mnt/data", bind.Target);
        Assert.True(bind.Flags.HasFlag(NativeOpFlags.InRoot));
        Assert.False(bind.Flags.HasFlag(NativeOpFlags.SourceInRoot));
        Assert.Equal("/images/alpine", ops[^1].Operation.Target);
    }

    [Fact]
    public void An_empty_root_pivots_into_a_tmpfs_base_first_and_names_host_sources_under_oldroot()
    {
        IsolationSpec.CompiledOp[] ops = Compile(m => m.EmptyRoot().BindReadOnly("/usr", "/usr").Dev().MaskPaths("/proc/kcore"));

        Assert.Equal(NativeOpKind.PivotBase, ops[1].Operation.Kind);
        Assert.Equal("/oldroot/proc/self/fd", ops.Single(o => o.Operation.Kind == NativeOpKind.OpenRoot).Operation.Source);
        Assert.Equal("/oldroot/usr", ops.First(o => o.Operation.Description == "ro-bind /usr on /usr").Operation.Source);
        Assert.Contains(ops, o => o.Operation.Source == "/oldroot/dev/null" && o.Operation.Kind == NativeOpKind.Bind);
        Assert.Equal("/oldroot/dev/null", ops.Single(o => o.Operation.Kind == NativeOpKind.Mask).Operation.Source);
        Assert.Equal("/newroot", ops[^1].Operation.Target);
    }

    [Fact]
    public void Operations_of_one_call_share_its_number_in_error_messages()
    {
        IsolationSpec.CompiledOp[] ops = Compile(m => m.Root("/r").Tmpfs("/tmp").Dev().ContainerDefaults().Tmpfs("/run"));

        int[] devIndexes = ops.Where(o => o.Operation.Description.StartsWith("dev on /dev", StringComparison.Ordinal)).Select(o => o.UserIndex).Distinct().ToArray();
        Assert.Equal([2], devIndexes);
        Assert.Equal(3, ops.First(o => o.Operation.Kind == NativeOpKind.Mask).UserIndex);
        Assert.Equal(4, ops.First(o => o.Operation.Description.StartsWith("read-only", StringComparison.Ordinal)).UserIndex);
        Assert.Equal(5, ops[^2].UserIndex); // the last is the implicit pivot_root (0)
        Assert.Equal(0, ops[^1].UserIndex);
    }

    [Fact]
    public void Plans_composed_in_several_calls_keep_numbering()
    {
        BuilderState state = Sandbox.WithMounts(m => m.Tmpfs("/a")).WithMounts(m => m.Tmpfs("/b")).State;

        Assert.Equal([1, 2], state.Mounts.Select(o => o.Call));
    }

    [Fact]
    public void An_overlay_passes_its_layers_top_first_and_a_single_read_only_layer_becomes_a_read_only_bind()
    {
        IsolationSpec.CompiledOp[] ops = Compile(m => m.Root("/r").Overlay("/", ["/top", "/bottom"], "/state/upper", "/state/work").ReadOnlyOverlay("/ro", ["/one"]));

        MountOperation overlay = ops.Single(o => o.Operation.Kind == NativeOpKind.Overlay).Operation;
        Assert.Equal("/top\0/bottom", Encoding.UTF8.GetString(overlay.Contents!));
        Assert.Equal(2, overlay.N2);
        Assert.Equal("/state/upper", overlay.FsType);
        Assert.Equal("/state/work", overlay.Data);
        MountOperation ro = ops.Single(o => o.Operation.Description.StartsWith("ro-overlay", StringComparison.Ordinal)).Operation;
        Assert.Equal(NativeOpKind.Bind, ro.Kind);
        Assert.True(ro.Flags.HasFlag(NativeOpFlags.ReadOnly));
    }

    [Fact]
    public void Read_only_paths_are_resolved_inside_the_root_on_both_ends()
    {
        IsolationSpec.CompiledOp[] ops = Compile(m => m.Root("/r").Proc().ReadOnlyPaths("/proc/sys"));

        MountOperation ro = ops.Single(o => o.Operation.Description == "read-only /proc/sys").Operation;
        Assert.True(ro.Flags.HasFlag(NativeOpFlags.SourceInRoot | NativeOpFlags.InRoot | NativeOpFlags.Optional | NativeOpFlags.ReadOnly));
        Assert.Equal("/proc/sys", ro.Source);
    }

    [Theory]
    [InlineData("/a/b/", "/a/b")]
    [InlineData("/", "/")]
    [InlineData("//", "/")]
    public void Trailing_slashes_are_dropped_from_paths(string written, string compiled)
    {
        Assert.Equal(compiled, Compile(m => m.Dir(written)).Last().Operation.Target);
    }

    [Fact]
    public void Bad_mount_input_is_refused_with_what_to_do()
    {
        Assert.Contains("relative", Assert.Throws<ArgumentException>(() => Sandbox.WithMounts(m => m.Overlay("/x", ["lower"], "/u", "/w"))).Message);
        Assert.Contains("separate", Assert.Throws<ArgumentException>(() => Sandbox.WithMounts(m => m.Overlay("/x", ["/l"], "/u", "/u/work"))).Message);
        Assert.Contains("at least 1", Assert.Throws<ArgumentException>(() => Sandbox.WithMounts(m => m.TmpOverlay("/x", []))).Message);
        Assert.Contains("at most 64", Assert.Throws<ArgumentException>(() => Sandbox.WithMounts(m => m.TmpOverlay("/x", Enumerable.Range(0, 65).Select(i => $"/l{i}")))).Message);
        Assert.Contains("NUL", Assert.Throws<ArgumentException>(() => Sandbox.WithMounts(m => m.MaskPaths("/pro\0c"))).Message);
        Assert.Contains("at least one", Assert.Throws<ArgumentException>(() => Sandbox.WithMounts(m => m.MaskPaths())).Message);
        Assert.Contains("requires Namespaces.User", Assert.Throws<ArgumentException>(() => new NamespaceBuilder()
            .WithNamespaces(Namespaces.Mount).WithMounts(m => m.IdmappedBind("/a", "/b")).Build()).Message);
        Assert.Contains("needs a new root", Assert.Throws<ArgumentException>(() => Sandbox.WithMounts(m => m.Dev()).Build()).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Sandbox.WithMounts(m => m.SetPropagation("/x", MountPropagation.Unchanged)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Sandbox.WithMounts(m => m.TmpOverlay("/x", ["/l"], sizeBytes: 0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Sandbox.WithMounts(m => m.FileFromDescriptor("/x", -1)));
    }

    [Fact]
    public void The_default_masks_match_what_container_engines_hide()
    {
        Assert.Contains("/proc/kcore", MountPlanBuilder.DefaultMaskedPaths);
        Assert.Contains("/proc/keys", MountPlanBuilder.DefaultMaskedPaths);
        Assert.Contains("/proc/timer_list", MountPlanBuilder.DefaultMaskedPaths);
        Assert.Contains("/sys/firmware", MountPlanBuilder.DefaultMaskedPaths);
        Assert.Equal(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"], MountPlanBuilder.DefaultReadOnlyPaths);
    }
}
