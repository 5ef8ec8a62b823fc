using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Isolation.Benchmarks.Reports;

/// <summary>The inverse of the mean time per operation: spawns (start to exit) per second.</summary>
internal sealed class SpawnsPerSecondColumn : IColumn
{
    public string Id => nameof(SpawnsPerSecondColumn);
    public string ColumnName => "Spawns/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "Start-to-exit cycles per second (1 s / Mean)";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) =>
        GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double? meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        return meanNs is > 0 ? (1e9 / meanNs.Value).ToString("N0", System.Globalization.CultureInfo.InvariantCulture) : "-";
    }

    // Not for the scale rows, whose operation is a whole fleet.
    public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(b => b.Descriptor.Type != typeof(ScaleBenchmarks));
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
}
