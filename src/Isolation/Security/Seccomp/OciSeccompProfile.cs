using System.Text.Json;

namespace Isolation.Security.Seccomp;

/// <summary>
/// Reads the OCI runtime spec's seccomp object (<c>linux.seccomp</c> in config.json), which is also the
/// format of Docker's and Podman's profile files:
/// <code>
/// { "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],
///   "flags": ["SECCOMP_FILTER_FLAG_LOG"],
///   "syscalls": [ { "names": ["clone"], "action": "SCMP_ACT_ALLOW",
///                   "args": [ { "index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ" } ] } ] }
/// </code>
/// Docker's extensions are honoured conservatively: a rule with <c>includes.caps</c> is dropped (the sandbox
/// is assumed to hold none of those capabilities), <c>includes/excludes.arches</c> and <c>minKernel</c> are
/// checked. Unknown system call names are skipped, as runc does; SCMP_ACT_TRACE and SCMP_ACT_NOTIFY need a
/// supervisor this library does not run and are rejected.
/// </summary>
internal static class OciSeccompProfile
{
    private const int EPERM = 1;

    public static SeccompProfile Parse(string json)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(json);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"The seccomp profile is not valid JSON: {e.Message}", nameof(json), e);
        }
        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ArgumentException("A seccomp profile is a JSON object with at least \"defaultAction\".", nameof(json));
            int defaultErrno = root.TryGetProperty("defaultErrnoRet", out JsonElement der) ? der.GetInt32() : EPERM;
            SeccompAction defaultAction = Action(Required(root, "defaultAction"), defaultErrno);
            var profile = new SeccompProfile(defaultAction).WithIgnoreUnknown();

            uint flags = 0;
            if (root.TryGetProperty("flags", out JsonElement flagList) && flagList.ValueKind == JsonValueKind.Array)
            {
                foreach (JsonElement flag in flagList.EnumerateArray())
                {
                    flags |= flag.GetString() switch
                    {
                        "SECCOMP_FILTER_FLAG_TSYNC" => 0, // the child is single-threaded when it loads the filter
                        "SECCOMP_FILTER_FLAG_LOG" => 2u,
                        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => 4u,
                        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => 0, // only meaningful with SCMP_ACT_NOTIFY
                        var other => throw new ArgumentException($"Unknown seccomp flag '{other}'; known: SECCOMP_FILTER_FLAG_TSYNC, SECCOMP_FILTER_FLAG_LOG, SECCOMP_FILTER_FLAG_SPEC_ALLOW.", nameof(json)),
                    };
                }
            }
            profile = profile.WithFlags(flags);

            if (!root.TryGetProperty("syscalls", out JsonElement syscalls) || syscalls.ValueKind == JsonValueKind.Null)
                return profile;
            int index = 0;
            foreach (JsonElement entry in syscalls.EnumerateArray())
            {
                index++;
                if (!Applies(entry))
                    continue;
                int errno = entry.TryGetProperty("errnoRet", out JsonElement er) ? er.GetInt32() : EPERM;
                SeccompAction action = Action(Required(entry, "action"), errno);
                var arguments = new List<SeccompArgument>();
                if (entry.TryGetProperty("args", out JsonElement args) && args.ValueKind == JsonValueKind.Array)
                {
                    foreach (JsonElement arg in args.EnumerateArray())
                        arguments.Add(Argument(arg, index));
                }
                var names = new List<string>();
                if (entry.TryGetProperty("names", out JsonElement nameList) && nameList.ValueKind == JsonValueKind.Array)
                    names.AddRange(nameList.EnumerateArray().Select(n => n.GetString() ?? ""));
                if (entry.TryGetProperty("name", out JsonElement single) && single.ValueKind == JsonValueKind.String)
                    names.Add(single.GetString()!);
                if (names.Count == 0)
                    throw new ArgumentException($"syscalls[{index - 1}] names no system call; give \"names\": [\"...\"].", nameof(json));
                foreach (string name in names)
                {
                    foreach (SeccompArgument argument in arguments)
                        argument.Validate(name);
                    profile = profile.AddRule(new SeccompRule(name, action, [.. arguments]));
                }
            }
            return profile;
        }
    }

    private static string Required(JsonElement element, string name) =>
        element.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()!
            : throw new ArgumentException($"The seccomp profile lacks \"{name}\" (a string such as \"SCMP_ACT_ERRNO\").");

    private static SeccompAction Action(string name, int errno) => name switch
    {
        "SCMP_ACT_ALLOW" => SeccompAction.Allow,
        "SCMP_ACT_ERRNO" => SeccompAction.Errno(errno),
        "SCMP_ACT_KILL" or "SCMP_ACT_KILL_THREAD" => SeccompAction.KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction.KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction.Trap,
        "SCMP_ACT_LOG" => SeccompAction.Log,
        "SCMP_ACT_TRACE" or "SCMP_ACT_NOTIFY" => throw new ArgumentException($"{name} needs a tracer or a user-space supervisor, which this library does not run; use SCMP_ACT_ERRNO or SCMP_ACT_KILL_PROCESS."),
        _ => throw new ArgumentException($"Unknown seccomp action '{name}'; known: SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP, SCMP_ACT_LOG."),
    };

    private static SeccompArgument Argument(JsonElement arg, int rule)
    {
        int index = arg.GetProperty("index").GetInt32();
        ulong value = arg.TryGetProperty("value", out JsonElement v) ? v.GetUInt64() : 0;
        ulong valueTwo = arg.TryGetProperty("valueTwo", out JsonElement v2) ? v2.GetUInt64() : 0;
        string op = arg.TryGetProperty("op", out JsonElement o) ? o.GetString() ?? "" : "";
        return op switch
        {
            "SCMP_CMP_EQ" => new(index, SeccompComparison.Equal, value),
            "SCMP_CMP_NE" => new(index, SeccompComparison.NotEqual, value),
            "SCMP_CMP_LT" => new(index, SeccompComparison.LessThan, value),
            "SCMP_CMP_LE" => new(index, SeccompComparison.LessOrEqual, value),
            "SCMP_CMP_GT" => new(index, SeccompComparison.GreaterThan, value),
            "SCMP_CMP_GE" => new(index, SeccompComparison.GreaterOrEqual, value),
            // OCI: for SCMP_CMP_MASKED_EQ, "value" is the mask and "valueTwo" the value compared with.
            "SCMP_CMP_MASKED_EQ" => new(index, SeccompComparison.MaskedEqual, valueTwo, value),
            _ => throw new ArgumentException($"syscalls[{rule - 1}]: unknown comparison '{op}'; known: SCMP_CMP_EQ, SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_GT, SCMP_CMP_GE, SCMP_CMP_MASKED_EQ."),
        };
    }

    /// <summary>Docker's <c>includes</c>/<c>excludes</c>, judged for this host and a sandbox without capabilities.</summary>
    private static bool Applies(JsonElement entry)
    {
        string arch = SeccompCompiler.NativeArchitecture == SeccompArchitecture.X86_64 ? "amd64" : "arm64";
        if (entry.TryGetProperty("includes", out JsonElement inc) && inc.ValueKind == JsonValueKind.Object)
        {
            if (inc.TryGetProperty("caps", out JsonElement caps) && caps.ValueKind == JsonValueKind.Array && caps.GetArrayLength() > 0)
                return false;
            if (inc.TryGetProperty("arches", out JsonElement arches) && arches.ValueKind == JsonValueKind.Array && arches.GetArrayLength() > 0
                && !arches.EnumerateArray().Any(a => a.GetString() == arch))
                return false;
            if (inc.TryGetProperty("minKernel", out JsonElement min) && min.ValueKind == JsonValueKind.String
                && Version.TryParse(min.GetString(), out Version? minimum) && Environment.OSVersion.Version < minimum)
                return false;
        }
        if (entry.TryGetProperty("excludes", out JsonElement exc) && exc.ValueKind == JsonValueKind.Object)
        {
            if (exc.TryGetProperty("arches", out JsonElement arches) && arches.ValueKind == JsonValueKind.Array
                && arches.EnumerateArray().Any(a => a.GetString() == arch))
                return false;
        }
        return true;
    }
}
