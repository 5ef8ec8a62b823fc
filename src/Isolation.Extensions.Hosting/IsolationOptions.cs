namespace Isolation.Extensions.Hosting;

/// <summary>The <c>Isolation</c> configuration section: named sandbox specs and the health check.</summary>
public sealed class IsolationOptions
{
    /// <summary>The configuration section applications pass to <c>AddIsolation</c> by convention.</summary>
    public const string SectionName = "Isolation";

    /// <summary>Sandbox specs by name; <see cref="IsolationSpecs.Get"/> builds each once.</summary>
    public Dictionary<string, SandboxOptions> Specs { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>What <see cref="IsolationHealthCheck"/> starts.</summary>
    public IsolationHealthCheckOptions HealthCheck { get; set; } = new();
}

/// <summary>The health check's probe: a sandbox started, waited for and disposed on each check.</summary>
public sealed class IsolationHealthCheckOptions
{
    /// <summary>The named spec to probe; none: a user, PID and mount namespace with /proc, what most specs need.</summary>
    public string? Spec { get; set; }

    /// <summary>The program the probe runs; it must exit 0.</summary>
    public string Program { get; set; } = "/bin/true";

    /// <summary>Its arguments.</summary>
    public List<string> Arguments { get; set; } = [];

    /// <summary>How long a probe may take before the check reports the host unhealthy.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(10);
}
