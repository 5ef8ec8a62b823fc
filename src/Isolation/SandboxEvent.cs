namespace Isolation;

/// <summary>
/// What <see cref="IsolationSpec.ListenAsync"/> reports as a sandbox runs, in order: one <see cref="SandboxStarted"/>,
/// the program's lines as they come (<see cref="StandardOutputLine"/>, <see cref="StandardErrorLine"/>), one
/// <see cref="SandboxExited"/>. Like CliWrap's <c>ListenAsync</c>.
/// </summary>
public abstract record SandboxEvent;

/// <summary>
/// The program has been exec'd. <see cref="StandardInput"/> is the write end of its standard input when the run
/// was given no input of its own: write while you read its output, and dispose it to send end of file.
/// </summary>
public sealed record SandboxStarted(int ProcessId, Stream? StandardInput) : SandboxEvent;

/// <summary>One line of standard output, without its line break.</summary>
public sealed record StandardOutputLine(string Text) : SandboxEvent;

/// <summary>One line of standard error, without its line break.</summary>
public sealed record StandardErrorLine(string Text) : SandboxEvent;

/// <summary>The program has exited and its output has been read to its end.</summary>
public sealed record SandboxExited(ExitStatus Status, ResourceUsage ResourceUsage, bool OutputTruncated) : SandboxEvent;
