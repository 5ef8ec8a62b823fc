using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Isolation.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Isolation.Tests.Integration;

/// <summary>The meter and the activity source named "Isolation", read back through MeterListener and ActivityListener; logging by category.</summary>
public sealed class TelemetryTests
{
    private sealed class Recorder : IDisposable
    {
        private readonly MeterListener _meters = new();
        private readonly ActivityListener _activities;

        public ConcurrentQueue<(string Instrument, double Value, Dictionary<string, object?> Tags)> Measurements { get; } = new();
        public ConcurrentQueue<Activity> Activities { get; } = new();

        public Recorder()
        {
            _meters.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == IsolationTelemetry.Name)
                    listener.EnableMeasurementEvents(instrument);
            };
            _meters.SetMeasurementEventCallback<long>((i, v, tags, _) => Record(i, v, tags));
            _meters.SetMeasurementEventCallback<double>((i, v, tags, _) => Record(i, v, tags));
            _meters.Start();
            _activities = new ActivityListener
            {
                ShouldListenTo = source => source.Name == IsolationTelemetry.Name,
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = a => Activities.Enqueue(a),
            };
            ActivitySource.AddActivityListener(_activities);
        }

        private void Record(Instrument i, double v, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var map = new Dictionary<string, object?>();
            foreach (KeyValuePair<string, object?> t in tags)
                map[t.Key] = t.Value;
            Measurements.Enqueue((i.Name, v, map));
        }

        public void Dispose()
        {
            _meters.Dispose();
            _activities.Dispose();
        }
    }

    [Fact]
    public async Task A_start_and_its_exit_are_counted_timed_and_traced()
    {
        using var recorder = new Recorder();
        IsolationSpec spec = new NamespaceBuilder().WithTimeout(TimeSpan.FromMilliseconds(200)).Build();

        int pid;
        await using (IsolatedProcess p = spec.Start("/bin/sleep", "30"))
        {
            pid = p.Id;
            Assert.Equal(TerminationReason.TimedOut, (await p.WaitForExitAsync()).Reason);
        }

        Activity span = Assert.Single(recorder.Activities, a => a.GetTagItem("isolation.pid") is int id && id == pid);
        Assert.Equal("isolation.start", span.OperationName);
        Assert.Equal("started", span.GetTagItem("isolation.outcome"));
        Assert.Equal("/bin/sleep", span.GetTagItem("isolation.program"));
        var m = recorder.Measurements.ToArray();
        Assert.Contains(m, x => x.Instrument == "isolation.sandboxes.started" && x.Value == 1);
        Assert.Contains(m, x => x.Instrument == "isolation.sandboxes.live" && x.Value == 1);
        Assert.Contains(m, x => x.Instrument == "isolation.sandboxes.live" && x.Value == -1);
        Assert.Contains(m, x => x.Instrument == "isolation.sandbox.start.duration" && x.Value > 0 && x.Value < 30);
        Assert.Contains(m, x => x.Instrument == "isolation.sandboxes.exited" && (string?)x.Tags["isolation.reason"] == "TimedOut");
    }

    [Fact]
    public void A_failed_start_is_counted_with_its_step_and_its_span_says_failed()
    {
        using var recorder = new Recorder();
        string program = $"/no/such/program-{Guid.NewGuid():N}";

        Assert.Throws<SandboxSetupException>(() => new NamespaceBuilder().Build().Start(program));

        Activity span = Assert.Single(recorder.Activities, a => (string?)a.GetTagItem("isolation.program") == program);
        Assert.Equal("failed", span.GetTagItem("isolation.outcome"));
        Assert.Equal("Exec", span.GetTagItem("isolation.step"));
        Assert.Equal(ActivityStatusCode.Error, span.Status);
        Assert.Contains(recorder.Measurements, x => x.Instrument == "isolation.sandboxes.failed" && (string?)x.Tags["isolation.step"] == "Exec");
    }

    private sealed class CollectingProvider : ILoggerFactory
    {
        public void AddProvider(ILoggerProvider provider) => throw new NotSupportedException();

        public ConcurrentQueue<(string Category, LogLevel Level, EventId Id, string Message)> Entries { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Collecting(this, categoryName);

        public void Dispose()
        {
        }

        private sealed class Collecting(CollectingProvider owner, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                owner.Entries.Enqueue((category, logLevel, eventId, formatter(state, exception)));
        }
    }

    [Fact]
    public async Task A_logger_factory_gets_the_librarys_categories_and_outcomes_above_debug()
    {
        var provider = new CollectingProvider();
        IsolationSpec spec = new NamespaceBuilder().WithTimeout(TimeSpan.FromMilliseconds(200)).WithLogger(provider).Build();

        await using (IsolatedProcess p = spec.Start("/bin/sleep", "30"))
            await p.WaitForExitAsync();
        Assert.Throws<SandboxSetupException>(() => spec.Start("/no/such/program"));

        var entries = provider.Entries.ToArray();
        Assert.Contains(entries, e => e.Category == "Isolation.IsolationSpec" && e.Level == LogLevel.Debug && e.Id.Id == 6);
        Assert.Contains(entries, e => e.Category == "Isolation.IsolatedProcess" && e.Level == LogLevel.Warning && e.Id.Id == 10);
        Assert.Contains(entries, e => e.Category == "Isolation.IsolationSpec" && e.Level == LogLevel.Warning && e.Id.Id == 7 && e.Message.Contains("step Exec"));
    }
}
