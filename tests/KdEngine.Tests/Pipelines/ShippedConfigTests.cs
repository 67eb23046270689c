using NUnit.Framework;
using System.Text.Json.Nodes;
using KdEngine.Data;
using KdEngine.Experiments;
using KdEngine.Pipelines;

namespace KdEngine.Tests.Pipelines;

/// <summary>The configs and grids under benchmarks/zoo-configs are what docs/results.md tells users to run: each must
/// parse and validate with the current code (a renamed or misspelt key would otherwise surface only in a long run).</summary>
public class ShippedConfigTests
{
    private static string ConfigDirectory() =>
        Path.GetDirectoryName(DataPaths.FindUp(Path.Combine("benchmarks", "zoo-configs", "ffm-criteo.json")))!;

    [Test]
    public void Every_zoo_and_kd_config_parses_and_validates()
    {
        var files = Directory.GetFiles(ConfigDirectory(), "*.json");
        Assert.That(files, Has.Length.GreaterThanOrEqualTo(5));
        foreach (var file in files)
        {
            string name = Path.GetFileName(file);
            if (name.StartsWith("kd-", StringComparison.Ordinal))
                Assert.DoesNotThrow(() => KdExperimentOptions.FromJson(File.ReadAllText(file), name), name);
            else
                Assert.DoesNotThrow(() => ZooExperimentConfig.Load(file), name);
        }
    }

    [Test]
    public void Every_line_of_every_grid_parses_as_benchmarks_zoo_grid_sh_composes_it()
    {
        var grids = Directory.GetFiles(ConfigDirectory(), "*-grid.txt");
        Assert.That(grids, Is.Not.Empty);
        int candidates = 0;
        foreach (var grid in grids)
        {
            int lineNumber = 0;
            foreach (var line in File.ReadLines(grid))
            {
                lineNumber++;
                if (string.IsNullOrWhiteSpace(line) || line.StartsWith('#')) continue;
                var parts = line.Split('|');
                Assert.That(parts, Has.Length.EqualTo(2), $"{Path.GetFileName(grid)}:{lineNumber}: \"<training JSON>|<model JSON>\"");
                string model = JsonNode.Parse(parts[1])!["model"]!.GetValue<string>().ToLowerInvariant();
                string json = "{\"training\": " + parts[0] + ", \"minCount\": 2, \"models\": {\"" + model + "\": " + parts[1] + "}}";
                Assert.DoesNotThrow(() => ZooExperimentConfig.FromJson(json, $"{Path.GetFileName(grid)}:{lineNumber}"));
                candidates++;
            }
        }
        Assert.That(candidates, Is.GreaterThan(10));
    }
}
