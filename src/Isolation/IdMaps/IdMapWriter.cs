using System.Diagnostics;
using Isolation.Diagnostics;
using Microsoft.Extensions.Logging;
using static Isolation.Interop.Interop;
using static Tmds.Linux.LibC;

namespace Isolation.IdMaps;

/// <summary>
/// Parent side, between clone and sync 1: writes the child's setgroups, uid_map and gid_map
/// (user_namespaces(7)). A privileged caller, or an unprivileged one mapping just its own id, writes the
/// files itself; anything else goes through the setuid helpers newuidmap/newgidmap and /etc/subuid.
/// </summary>
internal sealed unsafe class IdMapWriter
{
    private readonly IdMap[] _uidMaps;
    private readonly IdMap[] _gidMaps;
    private readonly bool _uidDirect;
    private readonly bool _gidDirect;
    private readonly bool _denySetgroups;
    private readonly byte* _uidText;
    private readonly nuint _uidLength;
    private readonly byte* _gidText;
    private readonly nuint _gidLength;
    private readonly string _uidTextManaged;
    private readonly string _gidTextManaged;

    private static readonly byte* s_uidMap = Literal("uid_map"u8);
    private static readonly byte* s_gidMap = Literal("gid_map"u8);
    private static readonly byte* s_setgroups = Literal("setgroups"u8);
    private static readonly byte* s_deny = Literal("deny"u8);

    public IdMapWriter(IReadOnlyList<IdMap> uidMaps, IReadOnlyList<IdMap> gidMaps, SetgroupsPolicy policy, ref Interop.NativeBlock block)
    {
        _uidMaps = [.. uidMaps];
        _gidMaps = [.. gidMaps];
        uint euid = geteuid();
        uint egid = getegid();
        bool privileged = euid == 0;
        _uidDirect = privileged || _uidMaps is [{ Count: 1 } u] && u.Outside == euid;
        _gidDirect = privileged || _gidMaps is [{ Count: 1 } g] && g.Outside == egid;
        _denySetgroups = policy == SetgroupsPolicy.Deny
            || (policy == SetgroupsPolicy.Auto && !privileged && _gidMaps.Length > 0 && _gidDirect);
        _uidTextManaged = IdMap.ToText(_uidMaps);
        _gidTextManaged = IdMap.ToText(_gidMaps);
        _uidText = block.String(_uidTextManaged);
        _uidLength = (nuint)System.Text.Encoding.UTF8.GetByteCount(_uidTextManaged);
        _gidText = block.String(_gidTextManaged);
        _gidLength = (nuint)System.Text.Encoding.UTF8.GetByteCount(_gidTextManaged);
    }

    public static nuint Measure(IReadOnlyList<IdMap> uidMaps, IReadOnlyList<IdMap> gidMaps) =>
        Interop.NativeBlock.MeasureString(IdMap.ToText(uidMaps)) + Interop.NativeBlock.MeasureString(IdMap.ToText(gidMaps));

    /// <summary>Checks, before any system call, that the helpers and subordinate ranges a map needs exist.</summary>
    public void ValidateHost()
    {
        if (!_uidDirect)
            SubordinateIds.Check("uid", "newuidmap", "/etc/subuid", _uidMaps, geteuid());
        if (!_gidDirect)
            SubordinateIds.Check("gid", "newgidmap", "/etc/subgid", _gidMaps, getegid());
    }

    /// <summary>
    /// Whether the host writes the maps (through newuidmap/newgidmap, which it runs itself); otherwise the spawn
    /// helper writes them from <see cref="HelperSetgroups"/>, <see cref="HelperUidMap"/> and <see cref="HelperGidMap"/>,
    /// with no round trip to the host.
    /// </summary>
    public bool NeedsHost => (_uidMaps.Length > 0 && !_uidDirect) || (_gidMaps.Length > 0 && !_gidDirect);

    /// <summary>"deny" when the helper writes /proc/PID/setgroups, else null.</summary>
    public byte* HelperSetgroups => NeedsHost || !_denySetgroups ? null : s_deny;

    /// <summary>The uid map text the helper writes, else null.</summary>
    public byte* HelperUidMap => NeedsHost || _uidMaps.Length == 0 ? null : _uidText;

    /// <summary>The gid map text the helper writes, else null.</summary>
    public byte* HelperGidMap => NeedsHost || _gidMaps.Length == 0 ? null : _gidText;

    /// <summary>Logs the map files the helper wrote for <paramref name="pid"/> (at Debug).</summary>
    public void LogHelperWrites(int pid, ILogger logger)
    {
        if (HelperSetgroups is not null)
            Log.WroteProcFile(logger, pid, "setgroups", "deny");
        if (HelperUidMap is not null)
            Log.WroteProcFile(logger, pid, "uid_map", _uidTextManaged.TrimEnd());
        if (HelperGidMap is not null)
            Log.WroteProcFile(logger, pid, "gid_map", _gidTextManaged.TrimEnd());
    }

    /// <summary>The helper failed to write a map file for <paramref name="pid"/>: the same words as when the host fails.</summary>
    public SandboxSetupException HelperFailed(SetupStep step, int errno, int pid) => step switch
    {
        SetupStep.UidMap => MapFailed(pid, "uid", "newuidmap", _uidTextManaged, step, errno),
        SetupStep.GidMap => MapFailed(pid, "gid", "newgidmap", _gidTextManaged, step, errno),
        _ => new SandboxSetupException(SetupStep.Setgroups, $"write /proc/{pid}/setgroups", errno, $"/proc/{pid}/setgroups"),
    };

    private static SandboxSetupException MapFailed(int pid, string kind, string tool, string managedText, SetupStep step, int errno)
    {
        string hint = errno == EPERM
            ? $"the kernel refused the {kind} map '{managedText.TrimEnd().Replace('\n', ';')}': an unprivileged caller may map only its own {kind}, once; " +
              $"for more ranges install {tool} (Debian package uidmap) and give the user ranges in /etc/sub{kind}"
            : $"check that the {kind} map's ranges exist on the host";
        return new SandboxSetupException(step, $"write /proc/{pid}/{kind}_map", errno, $"/proc/{pid}/{kind}_map", hint);
    }

    /// <summary>Host step: writes the maps of child <paramref name="pid"/>. Throws <see cref="SandboxSetupException"/>.</summary>
    public void Write(int pid, ILogger logger)
    {
        if (_denySetgroups)
        {
            int rc = IsolationNative_WriteProcFile(pid, s_setgroups, s_deny, 4);
            if (rc < 0)
                throw new SandboxSetupException(SetupStep.Setgroups, $"write /proc/{pid}/setgroups", -rc, $"/proc/{pid}/setgroups");
            Log.WroteProcFile(logger, pid, "setgroups", "deny");
        }
        if (_uidMaps.Length > 0)
            WriteOne(pid, logger, _uidDirect, s_uidMap, _uidText, _uidLength, _uidTextManaged, _uidMaps, "uid", "newuidmap", SetupStep.UidMap);
        if (_gidMaps.Length > 0)
            WriteOne(pid, logger, _gidDirect, s_gidMap, _gidText, _gidLength, _gidTextManaged, _gidMaps, "gid", "newgidmap", SetupStep.GidMap);
    }

    private static void WriteOne(int pid, ILogger logger, bool direct, byte* file, byte* text, nuint length, string managedText,
        IdMap[] maps, string kind, string tool, SetupStep step)
    {
        if (direct)
        {
            int rc = IsolationNative_WriteProcFile(pid, file, text, length);
            if (rc < 0)
                throw MapFailed(pid, kind, tool, managedText, step, -rc);
            if (logger.IsEnabled(LogLevel.Debug))
                Log.WroteProcFile(logger, pid, $"{kind}_map", managedText.TrimEnd());
            return;
        }

        string? toolPath = SubordinateIds.FindTool(tool)
            ?? throw new SandboxSetupException(step, $"map {kind}s of pid {pid}", 0, null,
                $"{tool} is not installed; a {kind} map with several ranges needs it when not running as root (Debian: apt-get install uidmap)");
        var info = new ProcessStartInfo(toolPath) { RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
        foreach (IdMap m in maps)
        {
            info.ArgumentList.Add(m.Inside.ToString(System.Globalization.CultureInfo.InvariantCulture));
            info.ArgumentList.Add(m.Outside.ToString(System.Globalization.CultureInfo.InvariantCulture));
            info.ArgumentList.Add(m.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        using Process process = Process.Start(info)!;
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new SandboxSetupException(step, $"{tool} {pid} {managedText.TrimEnd().Replace('\n', ' ')} exited with code {process.ExitCode}: {stderr.Trim()}", 0, toolPath,
                $"check the ranges given to the user in /etc/sub{kind}");
        Log.RanMapTool(logger, pid, tool);
    }

    private static byte* Literal(ReadOnlySpan<byte> utf8)
    {
        byte* p = (byte*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)utf8.Length + 1);
        utf8.CopyTo(new Span<byte>(p, utf8.Length));
        p[utf8.Length] = 0;
        return p;
    }
}
