using System.Text;

namespace Isolation;

/// <summary>
/// What one <see cref="IsolationSpec.RunAsync(string, IReadOnlyList{string}, RunOptions, CancellationToken)"/> or
/// <see cref="IsolationSpec.ListenAsync"/> feeds the program and where its output goes, and the per-run
/// environment, working directory, files and timeout that a code runner changes for every job without a new
/// <see cref="NamespaceBuilder.Build"/>.
/// </summary>
/// <remarks>
/// Setting <see cref="Environment"/>, <see cref="WorkingDirectory"/>, <see cref="Files"/> or <see cref="Timeout"/>
/// compiles a private copy of the spec for the run (validated like <see cref="NamespaceBuilder.Build"/>, so a
/// bad value throws <see cref="ArgumentException"/> before anything starts); the other options cost nothing.
/// </remarks>
public sealed record RunOptions
{
    /// <summary>The default cap on each output stream: 16 MiB.</summary>
    public const long DefaultMaxOutputBytes = 16L << 20;

    /// <summary>Text written to the program's standard input (encoded with <see cref="Encoding"/>), then end of file.</summary>
    public string? StandardInput { get; init; }

    /// <summary>Bytes written to the program's standard input, then end of file.</summary>
    public ReadOnlyMemory<byte>? StandardInputBytes { get; init; }

    /// <summary>
    /// A stream copied to the program's standard input until its end, then end of file. It is read on a thread
    /// of the run's own; a read that blocks keeps that thread, not the run.
    /// </summary>
    public Stream? StandardInputStream { get; init; }

    /// <summary>
    /// Where standard output goes instead of <see cref="SandboxResult.StandardOutput"/> (which is then empty). It
    /// is written on the run's pump thread; a slow stream slows the program, not memory.
    /// </summary>
    public Stream? StandardOutputStream { get; init; }

    /// <summary>Where standard error goes instead of <see cref="SandboxResult.StandardError"/>.</summary>
    public Stream? StandardErrorStream { get; init; }

    /// <summary>
    /// The most bytes kept of each output stream (default <see cref="DefaultMaxOutputBytes"/>). Past it the rest is
    /// read and discarded, so the program never blocks on a full pipe, and <see cref="SandboxResult.OutputTruncated"/> is set.
    /// </summary>
    public long MaxOutputBytes { get; init; } = DefaultMaxOutputBytes;

    /// <summary>How text input is encoded and output decoded (default UTF-8 without a byte order mark).</summary>
    public Encoding Encoding { get; init; } = new UTF8Encoding(false);

    /// <summary>Variables set for this run on top of the spec's environment; a null value removes the variable.</summary>
    public IReadOnlyDictionary<string, string?>? Environment { get; init; }

    /// <summary>The working directory of this run (inside the sandbox's root when it has one).</summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>
    /// Read-only files made for this run (path inside the sandbox → contents), such as a submission's source.
    /// Needs <see cref="Namespaces.Mount"/>; each is created with mode 0444 after the spec's own mounts.
    /// </summary>
    public IReadOnlyDictionary<string, byte[]>? Files { get; init; }

    /// <summary>A timeout for this run instead of the spec's (<see cref="NamespaceBuilder.WithTimeout"/>).</summary>
    public TimeSpan? Timeout { get; init; }

    internal bool NeedsOwnSpec => Environment is not null || WorkingDirectory is not null || Files is not null || Timeout is not null;

    internal bool HasInput => StandardInput is not null || StandardInputBytes is not null || StandardInputStream is not null;

    internal void Validate()
    {
        int inputs = (StandardInput is not null ? 1 : 0) + (StandardInputBytes is not null ? 1 : 0) + (StandardInputStream is not null ? 1 : 0);
        if (inputs > 1)
            throw new ArgumentException("Set at most one of StandardInput, StandardInputBytes and StandardInputStream.");
        if (MaxOutputBytes < 0)
            throw new ArgumentOutOfRangeException(nameof(MaxOutputBytes), MaxOutputBytes, "The output cap is 0 or more bytes.");
        if (MaxOutputBytes > Array.MaxLength && StandardOutputStream is null && StandardErrorStream is null)
            throw new ArgumentOutOfRangeException(nameof(MaxOutputBytes), MaxOutputBytes, $"A captured stream holds at most {Array.MaxLength} bytes; use StandardOutputStream for more.");
        ArgumentNullException.ThrowIfNull(Encoding);
    }

    /// <summary>The input as a stream, or null when there is none.</summary>
    internal Stream? OpenInput() =>
        StandardInputStream
        ?? (StandardInputBytes is { } bytes ? new MemoryStream(bytes.ToArray(), writable: false)
        : StandardInput is { } text ? new MemoryStream(Encoding.GetBytes(text), writable: false)
        : null);
}
