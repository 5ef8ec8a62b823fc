using System.Diagnostics;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace Isolation.Extensions.Hosting;

/// <summary>
/// Whether this host can run sandboxes right now: each check starts one (the spec and program of
/// <see cref="IsolationOptions.HealthCheck"/>), waits for it and disposes it. Healthy when it exits 0 in time;
/// unhealthy with the setup error (step, errno, hint) or the exit status otherwise — user namespaces switched
/// off, a cgroup that cannot be created, a helper that cannot start all show up here before a real job fails.
/// Register it with <c>services.AddHealthChecks().AddCheck&lt;IsolationHealthCheck&gt;("isolation")</c>.
/// </summary>
public sealed class IsolationHealthCheck(IsolationSpecs specs, IOptions<IsolationOptions> options) : IHealthCheck
{
    private static readonly Lazy<IsolationSpec> s_defaultProbe = new(() => new NamespaceBuilder()
        .WithNamespaces(Namespaces.User | Namespaces.Pid | Namespaces.Mount)
        .MapCurrentUserToRoot()
        .WithMounts(m => m.Proc())
        .Build());

    /// <inheritdoc />
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        IsolationHealthCheckOptions probe = options.Value.HealthCheck;
        var clock = Stopwatch.StartNew();
        try
        {
            IsolationSpec spec = probe.Spec is { Length: > 0 } name ? specs.Get(name) : s_defaultProbe.Value;
            await using IsolatedProcess process = spec.Start(probe.Program, [.. probe.Arguments]);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(probe.Timeout);
            ExitStatus status;
            try
            {
                status = await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                return new HealthCheckResult(context.Registration.FailureStatus, $"the probe sandbox ({probe.Program}) did not exit within {probe.Timeout.TotalSeconds:0.#} s");
            }
            var data = new Dictionary<string, object> { ["milliseconds"] = clock.Elapsed.TotalMilliseconds, ["spec"] = probe.Spec ?? "(default)" };
            return status.Success
                ? HealthCheckResult.Healthy($"started and reaped a sandbox in {clock.Elapsed.TotalMilliseconds:0.#} ms", data)
                : new HealthCheckResult(context.Registration.FailureStatus, $"the probe sandbox ({probe.Program}) ended: {status}", data: data);
        }
        catch (Exception e) when (e is SandboxSetupException or ArgumentException or KeyNotFoundException or PlatformNotSupportedException or DllNotFoundException or InvalidOperationException)
        {
            return new HealthCheckResult(context.Registration.FailureStatus, $"cannot start a sandbox: {e.Message}", e);
        }
    }
}
