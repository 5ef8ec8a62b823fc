using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Isolation.Diagnostics;

/// <summary>
/// The library's <see cref="Meter"/> and <see cref="ActivitySource"/>, both named <c>Isolation</c> (what OpenTelemetry's
/// <c>AddMeter("Isolation")</c> and <c>AddSource("Isolation")</c> pick up). Free when nothing listens: every record
/// checks <see cref="Instrument.Enabled"/> or <see cref="ActivitySource.HasListeners"/> first, so the start path
/// allocates nothing more.
/// </summary>
/// <remarks>
/// Instruments: <c>isolation.sandboxes.started</c> and <c>isolation.sandboxes.failed</c> (tag <c>isolation.step</c>),
/// <c>isolation.sandboxes.live</c>, <c>isolation.sandbox.start.duration</c> (seconds, to exec), and
/// <c>isolation.sandboxes.exited</c> (tag <c>isolation.reason</c>: Exited, Signaled, Killed, TimedOut, OutOfMemory,
/// PidsLimit). A start is the span <c>isolation.start</c> with <c>isolation.program</c>, <c>isolation.outcome</c>
/// (started, failed), and on failure <c>isolation.step</c> and an error status.
/// </remarks>
public static class IsolationTelemetry
{
    /// <summary>The name of the meter and of the activity source.</summary>
    public const string Name = "Isolation";

    internal static readonly ActivitySource Source = new(Name);
    internal static readonly Meter Meter = new(Name);

    private static readonly Counter<long> s_started = Meter.CreateCounter<long>("isolation.sandboxes.started", "{sandbox}", "Sandboxes started (the program exec'd)");
    private static readonly Counter<long> s_failed = Meter.CreateCounter<long>("isolation.sandboxes.failed", "{sandbox}", "Starts that failed during setup, by step");
    private static readonly UpDownCounter<long> s_live = Meter.CreateUpDownCounter<long>("isolation.sandboxes.live", "{sandbox}", "Sandboxes started and not yet exited");
    private static readonly Histogram<double> s_startDuration = Meter.CreateHistogram<double>("isolation.sandbox.start.duration", "s", "Time from Start to the program's exec");
    private static readonly Counter<long> s_exited = Meter.CreateCounter<long>("isolation.sandboxes.exited", "{sandbox}", "Sandboxes that exited, by reason");

    // Made at the first exit a listener counts: Enum.GetNames reads the enum's metadata, which under NativeAOT costs
    // a start that nobody measures a good part of a millisecond.
    private static string[]? s_reasons;

    /// <summary>A timestamp for the start's latency when anything listens, else 0 (no clock read).</summary>
    internal static long StartTimestamp() => s_startDuration.Enabled || Source.HasListeners() ? Stopwatch.GetTimestamp() : 0;

    internal static Activity? StartActivity(string program)
    {
        if (!Source.HasListeners())
            return null;
        Activity? activity = Source.StartActivity("isolation.start", ActivityKind.Internal);
        activity?.SetTag("isolation.program", program);
        return activity;
    }

    internal static void Started(long timestamp, Activity? activity, int pid)
    {
        if (s_started.Enabled)
            s_started.Add(1);
        if (s_live.Enabled)
            s_live.Add(1);
        if (timestamp != 0 && s_startDuration.Enabled)
            s_startDuration.Record(Stopwatch.GetElapsedTime(timestamp).TotalSeconds);
        if (activity is not null)
        {
            activity.SetTag("isolation.outcome", "started");
            activity.SetTag("isolation.pid", pid);
            activity.Dispose();
        }
    }

    internal static void Failed(Activity? activity, Exception e)
    {
        string step = e is SandboxSetupException s ? s.Step.ToString() : e is ArgumentException ? "Validation" : "Unknown";
        if (s_failed.Enabled)
            s_failed.Add(1, new KeyValuePair<string, object?>("isolation.step", step));
        if (activity is not null)
        {
            activity.SetTag("isolation.outcome", "failed");
            activity.SetTag("isolation.step", step);
            activity.SetStatus(ActivityStatusCode.Error, e.Message);
            activity.Dispose();
        }
    }

    /// <summary>Exit watcher (or a blocked waiter): once per started sandbox.</summary>
    internal static void Exited(TerminationReason? reason)
    {
        if (s_live.Enabled)
            s_live.Add(-1);
        if (reason is { } r && s_exited.Enabled)
            s_exited.Add(1, new KeyValuePair<string, object?>("isolation.reason", (s_reasons ??= Enum.GetNames<TerminationReason>())[(int)r]));
    }
}
