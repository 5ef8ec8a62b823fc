using Microsoft.Extensions.Logging;

namespace Isolation.Tests.Integration;

/// <summary>Each setup step is logged at Debug through the ILogger given to WithLogger.</summary>
public sealed class LoggingTests
{
    private sealed class CollectingLogger : ILogger
    {
        public List<(LogLevel Level, EventId Id, string Message)> Entries { get; } = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Entries)
                Entries.Add((logLevel, eventId, formatter(state, exception)));
        }
    }

    [Fact]
    public async Task Setup_steps_are_logged_at_debug_level()
    {
        var logger = new CollectingLogger();
        IsolationSpec spec = new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot().WithLogger(logger).Build();

        await using (IsolatedProcess p = spec.Start("/bin/true"))
            await p.WaitForExitAsync();

        string[] messages = [.. logger.Entries.Select(e => e.Message)];
        Assert.All(logger.Entries.Where(e => e.Id.Id != 40 /* the diagnostics-socket warning */), e => Assert.Equal(LogLevel.Debug, e.Level));
        Assert.Contains(messages, m => m.StartsWith("clone3 /bin/true", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.Contains("wrote uid_map", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.Contains("released (sync 1)", StringComparison.Ordinal));
        Assert.Contains(messages, m => m.Contains("exec'd /bin/true", StringComparison.Ordinal));
    }

    [Fact]
    public void A_setup_failure_is_logged()
    {
        var logger = new CollectingLogger();
        IsolationSpec spec = new NamespaceBuilder().WithLogger(logger).Build();
        Assert.Throws<SandboxSetupException>(() => spec.Start("/no/such/program"));
        Assert.Contains(logger.Entries, e => e.Message.Contains("setup failed: exec /no/such/program", StringComparison.Ordinal));
    }

    [Fact]
    public void Build_warns_when_the_sandbox_runs_as_the_callers_uid_and_sees_its_tmpdir()
    {
        Assert.SkipWhen(Environment.GetEnvironmentVariable("DOTNET_EnableDiagnostics") == "0", "this test process runs without the diagnostics socket, so there is nothing to warn about");
        var exposed = new CollectingLogger();
        new NamespaceBuilder().WithNamespaces(Namespaces.User).MapCurrentUserToRoot().WithLogger(exposed).Build();
        var hidden = new CollectingLogger();
        NamespaceBuilder.ForUntrustedCode().WithLogger(hidden).Build();
        var covered = new CollectingLogger();
        new NamespaceBuilder().WithNamespaces(Namespaces.User | Namespaces.Mount).MapCurrentUserToRoot()
            .WithMounts(m => m.Tmpfs(Path.GetTempPath())).WithLogger(covered).Build();

        Assert.Contains(exposed.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("dotnet-diagnostic-", StringComparison.Ordinal));
        Assert.DoesNotContain(hidden.Entries, e => e.Level == LogLevel.Warning);
        Assert.DoesNotContain(covered.Entries, e => e.Level == LogLevel.Warning);
    }
}
