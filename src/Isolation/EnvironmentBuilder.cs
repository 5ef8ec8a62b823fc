namespace Isolation;

/// <summary>
/// Composes a sandbox's environment: start from the caller's (captured when the spec is built) or from an
/// empty one, then set and unset variables in order. Used through <see cref="NamespaceBuilder.WithEnvironment"/>.
/// </summary>
public sealed class EnvironmentBuilder
{
    private readonly List<KeyValuePair<string, string?>> _changes = [];

    internal EnvironmentBuilder(bool clear, IEnumerable<KeyValuePair<string, string?>> changes)
    {
        IsCleared = clear;
        _changes.AddRange(changes);
    }

    internal bool IsCleared { get; private set; }
    internal IReadOnlyList<KeyValuePair<string, string?>> Changes => _changes;

    /// <summary>Start from an empty environment (like <c>env -i</c> and bubblewrap's <c>--clearenv</c>).</summary>
    public EnvironmentBuilder Clear()
    {
        IsCleared = true;
        _changes.Clear();
        return this;
    }

    /// <summary>Set a variable (like bubblewrap's <c>--setenv</c>).</summary>
    public EnvironmentBuilder Set(string name, string value)
    {
        ValidateName(name);
        ArgumentNullException.ThrowIfNull(value);
        if (value.Contains('\0'))
            throw new ArgumentException($"The value of environment variable '{name}' contains a NUL character; environment values cannot hold NUL.", nameof(value));
        _changes.Add(new(name, value));
        return this;
    }

    /// <summary>Remove a variable (like bubblewrap's <c>--unsetenv</c>).</summary>
    public EnvironmentBuilder Unset(string name)
    {
        ValidateName(name);
        _changes.Add(new(name, null));
        return this;
    }

    internal static void ValidateName(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name.Contains('=') || name.Contains('\0'))
            throw new ArgumentException($"Environment variable name '{name.Replace("\0", "\\0")}' contains '=' or NUL; use a name without them.", nameof(name));
    }

    /// <summary>The final list of NAME=value entries, given the caller's environment.</summary>
    internal List<string> Resolve(System.Collections.IDictionary inherited)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var order = new List<string>();
        if (!IsCleared)
        {
            foreach (System.Collections.DictionaryEntry entry in inherited)
            {
                string key = (string)entry.Key;
                if (result.TryAdd(key, (string?)entry.Value ?? ""))
                    order.Add(key);
            }
        }
        foreach ((string name, string? value) in _changes)
        {
            if (value is null)
            {
                if (result.Remove(name))
                    order.Remove(name);
            }
            else if (result.TryAdd(name, value))
                order.Add(name);
            else
                result[name] = value;
        }
        return order.ConvertAll(name => $"{name}={result[name]}");
    }
}
