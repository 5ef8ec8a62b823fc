using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Isolation.Extensions.Hosting;

/// <summary>
/// The named sandbox specs of an application: each is composed from its configuration (<see cref="SandboxOptions"/>)
/// and the code added with <see cref="IsolationBuilder.Configure"/>, built (validated) on first use and then
/// reused: an <see cref="IsolationSpec"/> is frozen and thread-safe. Inject it and call
/// <c>specs.Get("jobs").Start(program, args)</c>.
/// </summary>
public sealed class IsolationSpecs
{
    private readonly IsolationOptions _options;
    private readonly ILookup<string, Func<NamespaceBuilder, NamespaceBuilder>> _customizations;
    private readonly ILoggerFactory? _loggers;
    private readonly ConcurrentDictionary<string, Lazy<IsolationSpec>> _built = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Created by the container (<c>AddIsolation</c>).</summary>
    internal IsolationSpecs(IOptions<IsolationOptions> options, IEnumerable<SpecCustomization> customizations, ILoggerFactory? loggers = null)
    {
        _options = options.Value;
        _customizations = customizations.ToLookup(c => c.Name, c => c.Configure, StringComparer.OrdinalIgnoreCase);
        _loggers = loggers;
    }

    /// <summary>The names of every spec, configured or added in code.</summary>
    public IEnumerable<string> Names => _options.Specs.Keys.Union(_customizations.Select(g => g.Key), StringComparer.OrdinalIgnoreCase);

    /// <summary>The named spec, built once.</summary>
    /// <exception cref="KeyNotFoundException">No spec of that name is configured or added in code.</exception>
    /// <exception cref="ArgumentException">The spec's composition is invalid (the message names the spec and the problem).</exception>
    public IsolationSpec Get(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Lazy<IsolationSpec> lazy = _built.GetOrAdd(name, n => new Lazy<IsolationSpec>(() => Build(n)));
        try
        {
            return lazy.Value;
        }
        catch
        {
            _built.TryRemove(new KeyValuePair<string, Lazy<IsolationSpec>>(name, lazy)); // a fixed configuration may succeed later
            throw;
        }
    }

    private IsolationSpec Build(string name)
    {
        bool configured = _options.Specs.TryGetValue(name, out SandboxOptions? options);
        if (!configured && !_customizations.Contains(name))
            throw new KeyNotFoundException($"No Isolation spec is named '{name}'; configure it under Isolation:Specs:{name} or add it with AddIsolation().Configure(\"{name}\", ...). Known: {string.Join(", ", Names)}.");
        NamespaceBuilder builder = configured ? Compose(options!) : new NamespaceBuilder();
        foreach (Func<NamespaceBuilder, NamespaceBuilder> configure in _customizations[name])
            builder = configure(builder);
        if (_loggers is not null)
            builder = builder.WithLogger(_loggers.CreateLogger($"Isolation.Specs.{name}"));
        try
        {
            return builder.Build();
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"Isolation spec '{name}': {e.Message}", e);
        }
    }

    /// <summary>A builder from configuration, in the order the builder's own documentation composes it.</summary>
    internal static NamespaceBuilder Compose(SandboxOptions o)
    {
        NamespaceBuilder b = o.UntrustedCode ? NamespaceBuilder.ForUntrustedCode() : new NamespaceBuilder();
        if (o.Namespaces is Namespaces namespaces)
            b = b.WithNamespaces(namespaces);
        if (!o.UntrustedCode && (o.MapCurrentUserToRoot ?? o.Namespaces?.HasFlag(Namespaces.User) == true))
            b = b.MapCurrentUserToRoot();
        if (o.Hostname is not null)
            b = b.WithHostname(o.Hostname);
        if (o.MountProc || o.Tmpfs.Count > 0 || o.Binds.Count > 0 || o.ReadOnlyBinds.Count > 0)
        {
            b = b.WithMounts(m =>
            {
                foreach (var (source, target) in o.ReadOnlyBinds)
                    m.BindReadOnly(source, target);
                foreach (var (source, target) in o.Binds)
                    m.Bind(source, target);
                foreach (string target in o.Tmpfs)
                    m.Tmpfs(target);
                if (o.MountProc)
                    m.Proc();
            });
        }
        if (o.WorkingDirectory is not null)
            b = b.WithWorkingDirectory(o.WorkingDirectory);
        if (o.Environment.Count > 0)
            b = b.WithEnvironment(e =>
            {
                foreach (var (key, value) in o.Environment)
                    e.Set(key, value);
            });
        if (o.Init)
            b = b.WithInit();
        if (o.Timeout is TimeSpan timeout)
            b = b.WithTimeout(timeout);
        if (o.MemoryMax is not null || o.PidsMax is not null || o.CpuMax is not null || o.CgroupBestEffort)
        {
            b = b.WithCgroup(c =>
            {
                if (o.MemoryMax is long memory)
                    c.MemoryMax(memory);
                if (o.PidsMax is long pids)
                    c.PidsMax(pids);
                if (o.CpuMax is double cpus)
                    c.CpuMax(cpus);
                if (o.CgroupBestEffort)
                    c.BestEffort();
            });
        }
        return b;
    }
}
