namespace Isolation;

/// <summary>Where a sandboxed program's standard input, output or error goes.</summary>
public sealed class Stdio
{
    internal enum StdioKind { Inherit, Null, Pipe, File }

    private Stdio(StdioKind kind, string? path = null, bool append = false)
    {
        Kind = kind;
        Path = path;
        Append = append;
    }

    internal StdioKind Kind { get; }
    internal string? Path { get; }
    internal bool Append { get; }

    /// <summary>Share the caller's descriptor (the default).</summary>
    public static Stdio Inherit { get; } = new(StdioKind.Inherit);

    /// <summary>
    /// Connect to <c>/dev/null</c>. Where it cannot be opened (a <c>nodev</c> /dev, as inside a sandbox that binds the
    /// host's /dev without devices), a pipe of the sandbox's own that does the same: input at end of file, output
    /// read and dropped by the host.
    /// </summary>
    public static Stdio Null { get; } = new(StdioKind.Null);

    /// <summary>A pipe, exposed as a stream on <see cref="IsolatedProcess"/>.</summary>
    public static Stdio Pipe { get; } = new(StdioKind.Pipe);

    /// <summary>A file on the host, opened by the caller: read for input; created or truncated (or appended to) for output.</summary>
    public static Stdio File(string path, bool append = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return new(StdioKind.File, path, append);
    }

    /// <inheritdoc/>
    public override string ToString() => Kind == StdioKind.File ? $"file {Path}" : Kind.ToString().ToLowerInvariant();
}
