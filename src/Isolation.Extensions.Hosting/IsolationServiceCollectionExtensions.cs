using Isolation.Extensions.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers Isolation in a service collection.</summary>
public static class IsolationServiceCollectionExtensions
{
    /// <summary>
    /// Adds <see cref="IsolationSpecs"/> (named specs, built once each) and <see cref="IsolationHealthCheck"/>, with
    /// <see cref="IsolationOptions"/> bound from <paramref name="configuration"/> — pass the <c>Isolation</c> section,
    /// e.g. <c>builder.Configuration.GetSection("Isolation")</c>. Binding is compiled by the configuration-binding
    /// source generator, so it is trimming- and AOT-safe.
    /// </summary>
    public static IsolationBuilder AddIsolation(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        return services.AddIsolation(options => configuration.Bind(options));
    }

    /// <summary>Adds <see cref="IsolationSpecs"/> and <see cref="IsolationHealthCheck"/>, with options set in code.</summary>
    public static IsolationBuilder AddIsolation(this IServiceCollection services, Action<IsolationOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<IsolationOptions>().Configure(configure);
        services.TryAddSingleton(provider => new IsolationSpecs(
            provider.GetRequiredService<IOptions<IsolationOptions>>(),
            provider.GetServices<SpecCustomization>(),
            provider.GetService<ILoggerFactory>()));
        services.TryAddSingleton<IsolationHealthCheck>();
        return new IsolationBuilder(services);
    }

    /// <summary>Adds Isolation with no configured spec (named specs come from <see cref="IsolationBuilder.Configure"/>).</summary>
    public static IsolationBuilder AddIsolation(this IServiceCollection services) => services.AddIsolation(static _ => { });
}
