using Microsoft.Extensions.DependencyInjection;

namespace Isolation.Extensions.Hosting;

/// <summary>What <see cref="IsolationServiceCollectionExtensions.AddIsolation(IServiceCollection, Microsoft.Extensions.Configuration.IConfiguration)"/> returns: adds code to named specs.</summary>
public sealed class IsolationBuilder
{
    internal IsolationBuilder(IServiceCollection services) => Services = services;

    /// <summary>The service collection Isolation was added to.</summary>
    public IServiceCollection Services { get; }

    /// <summary>
    /// Applies <paramref name="configure"/> to the named spec after its configuration (or to an empty builder when
    /// configuration has no such spec), for what configuration cannot say: seccomp, Landlock, stdio, environment.
    /// Several calls for one name apply in order.
    /// </summary>
    public IsolationBuilder Configure(string name, Func<NamespaceBuilder, NamespaceBuilder> configure)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(configure);
        Services.AddSingleton(new SpecCustomization(name, configure));
        return this;
    }
}

internal sealed record SpecCustomization(string Name, Func<NamespaceBuilder, NamespaceBuilder> Configure);
