using System.Buffers.Binary;
using System.Text;

namespace Isolation.Tests.Infrastructure;

/// <summary>
/// What the package tests need to know about a native asset, read from its ELF headers (elf(5)): architecture,
/// type, interpreter, the symbol versions it needs from each library (.gnu.version_r), whether it still has a
/// symbol table or debug sections. 64-bit little-endian only, as every runtime the package ships.
/// </summary>
public sealed class ElfFile
{
    public const ushort EM_X86_64 = 62;
    public const ushort EM_AARCH64 = 183;
    private const ushort ET_DYN = 3;
    private const uint PT_INTERP = 3;
    private const uint SHT_SYMTAB = 2;
    private const uint SHT_GNU_verneed = 0x6ffffffe;

    public ushort Machine { get; private init; }

    /// <summary>ET_DYN: a shared library or a position-independent executable.</summary>
    public bool IsDynamicObject { get; private init; }

    /// <summary>The ELF interpreter (PT_INTERP), or null for a static executable or a library.</summary>
    public string? Interpreter { get; private init; }

    public bool HasSymbolTable { get; private init; }

    public IReadOnlyList<string> DebugSections { get; private init; } = [];

    /// <summary>Needed symbol versions, e.g. "GLIBC_2.14" from "libc.so.6".</summary>
    public IReadOnlyList<(string Library, string Version)> NeededVersions { get; private init; } = [];

    public string MachineName => Machine switch { EM_X86_64 => "x86-64", EM_AARCH64 => "aarch64", _ => $"machine {Machine}" };

    /// <summary>The highest GLIBC_2.N it needs (N), or null when it needs no glibc version (static, musl).</summary>
    public int? HighestGlibcMinor => NeededVersions
        .Where(v => v.Version.StartsWith("GLIBC_2.", StringComparison.Ordinal))
        .Select(v => int.Parse(v.Version["GLIBC_2.".Length..].Split('.')[0]))
        .DefaultIfEmpty(-1).Max() is int m and >= 0 ? m : null;

    public static ElfFile Read(byte[] b)
    {
        if (b.Length < 64 || b[0] != 0x7f || b[1] != 'E' || b[2] != 'L' || b[3] != 'F')
            throw new InvalidDataException("not an ELF file");
        if (b[4] != 2 || b[5] != 1)
            throw new InvalidDataException("not a 64-bit little-endian ELF file");
        ReadOnlySpan<byte> s = b;
        ushort type = U16(s, 16);
        ushort machine = U16(s, 18);
        ulong phoff = U64(s, 32), shoff = U64(s, 40);
        ushort phentsize = U16(s, 54), phnum = U16(s, 56), shentsize = U16(s, 58), shnum = U16(s, 60), shstrndx = U16(s, 62);

        string? interpreter = null;
        for (int i = 0; i < phnum; i++)
        {
            int ph = checked((int)phoff + i * phentsize);
            if (U32(s, ph) == PT_INTERP)
                interpreter = CString(s, (int)U64(s, ph + 8));
        }

        var sections = new (string Name, uint Type, ulong Offset, ulong Size, uint Link, uint Info)[shnum];
        int strtab = checked((int)shoff + shstrndx * shentsize);
        ulong namesOffset = shnum > 0 ? U64(s, strtab + 24) : 0;
        for (int i = 0; i < shnum; i++)
        {
            int sh = checked((int)shoff + i * shentsize);
            sections[i] = (CString(s, (int)namesOffset + (int)U32(s, sh)), U32(s, sh + 4), U64(s, sh + 24), U64(s, sh + 32), U32(s, sh + 40), U32(s, sh + 44));
        }

        var needed = new List<(string, string)>();
        foreach (var sec in sections.Where(x => x.Type == SHT_GNU_verneed))
        {
            int strings = (int)sections[sec.Link].Offset;
            int vn = (int)sec.Offset;
            for (uint n = 0; n < sec.Info; n++)
            {
                // Elf64_Verneed: vn_version, vn_cnt (u16), vn_file, vn_aux, vn_next (u32)
                ushort count = U16(s, vn + 2);
                string file = CString(s, strings + (int)U32(s, vn + 4));
                int aux = vn + (int)U32(s, vn + 8);
                for (int a = 0; a < count; a++)
                {
                    // Elf64_Vernaux: vna_hash (u32), vna_flags, vna_other (u16), vna_name, vna_next (u32)
                    needed.Add((file, CString(s, strings + (int)U32(s, aux + 8))));
                    aux += (int)U32(s, aux + 12);
                }
                uint next = U32(s, vn + 12);
                if (next == 0)
                    break;
                vn += (int)next;
            }
        }

        return new ElfFile
        {
            Machine = machine,
            IsDynamicObject = type == ET_DYN,
            Interpreter = interpreter,
            HasSymbolTable = sections.Any(x => x.Type == SHT_SYMTAB),
            DebugSections = [.. sections.Select(x => x.Name).Where(n => n.StartsWith(".debug", StringComparison.Ordinal))],
            NeededVersions = needed,
        };
    }

    private static ushort U16(ReadOnlySpan<byte> s, int at) => BinaryPrimitives.ReadUInt16LittleEndian(s[at..]);

    private static uint U32(ReadOnlySpan<byte> s, int at) => BinaryPrimitives.ReadUInt32LittleEndian(s[at..]);

    private static ulong U64(ReadOnlySpan<byte> s, int at) => BinaryPrimitives.ReadUInt64LittleEndian(s[at..]);

    private static string CString(ReadOnlySpan<byte> s, int at)
    {
        int end = s[at..].IndexOf((byte)0);
        return Encoding.ASCII.GetString(s.Slice(at, end));
    }
}
