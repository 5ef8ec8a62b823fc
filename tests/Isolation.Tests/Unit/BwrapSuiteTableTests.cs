using System.Diagnostics;
using Isolation.Tests.Infrastructure;

namespace Isolation.Tests.Unit;

/// <summary>
/// samples/Isolate/bwrap-suite/table, the script that merges the suite's results.tsv files into the README's table:
/// a file-format script, run on a small results file made here.
/// </summary>
public sealed class BwrapSuiteTableTests
{
    private static readonly string Table = Path.Combine(TestHostRunner.RepoRoot, "samples/Isolate/bwrap-suite/table");

    [Fact]
    public void Cases_named_after_their_script_get_rows_after_the_numbered_ones_and_count_in_the_totals()
    {
        string dir = Directory.CreateTempSubdirectory("isolation-suite-table-").FullName;
        try
        {
            // As ./run writes it: case, name, subject, user, result; test-specifying-*.sh run whole, after the numbered cases.
            string results = Path.Combine(dir, "results.tsv");
            File.WriteAllText(results, string.Concat(
                "1\tHelp works\tbwrap\troot\tpass\n", "1\tHelp works\tisolate\troot\tpass\n",
                "10\tten\tbwrap\troot\tpass\n", "10\tten\tisolate\troot\tpass\n",
                "2\t# SKIP no FUSE support\tbwrap\troot\tskip\n", "2\t# SKIP no FUSE support\tisolate\troot\tskip\n",
                "test-specifying-userns\tTest --userns\tbwrap\troot\tpass\n", "test-specifying-userns\tTest --userns\tisolate\troot\tpass\n",
                "test-specifying-pidns\tTest --pidns\tbwrap\troot\tpass\n", "test-specifying-pidns\tTest --pidns\tisolate\troot\tfail\n"));

            (int code, string output) = RunTable(results);

            Assert.Equal(0, code);
            Assert.Equal(
                """
                | # | case | bwrap root | isolate root |
                |---|---|---|---|
                | 1 | Help works | pass | pass |
                | 2 | # SKIP no FUSE support | skip | skip |
                | 10 | ten | pass | pass |
                | test-specifying-userns | Test --userns | pass | pass |
                | test-specifying-pidns | Test --pidns | pass | fail |

                bwrap root: 4 passed, 1 skipped, 0 failed
                isolate root: 3 passed, 1 skipped, 1 failed

                """, output);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static (int Code, string Output) RunTable(string results)
    {
        var info = new ProcessStartInfo("/bin/bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(Table);
        info.ArgumentList.Add(results);
        using Process p = Process.Start(info)!;
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.True(stderr.Result.Length == 0, stderr.Result);
        return (p.ExitCode, stdout);
    }
}
