using System.CommandLine;
using KdEngine.Cli.Options;
using KdEngine.Data.Parquet;
using KdEngine.Pipelines;

namespace KdEngine.Cli.Verbs;

/// <summary><c>convert</c>: text data (CSV/TSV/libSVM/libFFM, plain or gzip) to Parquet, or Parquet back to CSV, streaming.</summary>
internal static class ConvertVerb
{
    public static Command Create()
    {
        var data = new DataOptions();
        var to = CliOptions.Parsed<string?>("--to", "parquet|csv", "what to write (default: from the --out extension, .parquet → parquet, else csv)",
            text => text.ToLowerInvariant() is "parquet" or "csv" ? text.ToLowerInvariant() : throw new CliException($"expects parquet|csv, got '{text}'."));
        var output = CliOptions.Required("--out", "FILE", "the file to write (a temporary file renamed at the end)");
        var rowGroup = CliOptions.Int("--row-group-rows", "N", "rows per Parquet row group", ParquetConvert.DefaultRowGroupRows, min: 1);
        var delimiter = CliOptions.Choice("--delimiter", "CSV column separator", ["comma", "tab"], "comma");
        var command = new Command("convert",
            "Convert data between text and Parquet, streaming. Text (CSV/TSV/libSVM/libFFM, plain or gzip, one or more files as " +
            "--data with --format/--schema/--ranges) becomes one Parquet file with a column per schema field (label int, numeric " +
            "double, categorical string, multi-valued list of strings); Parquet becomes CSV with a header of the schema's fields. " +
            "Training on the result gives the same encoded rows as on the source.");
        data.Data.AllowMultipleArgumentsPerToken = false;
        data.AddTo(command);
        command.Options.Add(to);
        command.Options.Add(output);
        command.Options.Add(rowGroup);
        command.Options.Add(delimiter);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            string outPath = parse.GetValue(output)!;
            string target = parse.GetValue(to) ?? (outPath.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase) ? "parquet" : "csv");
            var source = data.Source(parse);
            var input = source.OpenInput();
            long rows;
            if (target == "parquet")
            {
                if (input.Format is ParquetFormat) throw new CliException($"{input.Name} is Parquet already; convert it with --to csv.");
                rows = ParquetConvert.ToParquet(input, outPath, parse.GetValue(rowGroup), data.Reader(parse), o.Writer);
            }
            else
            {
                if (input.Format is not ParquetFormat) throw new CliException($"{input.Name} is {input.Format.Name}; convert text to Parquet with --to parquet (text to text is not a conversion).");
                rows = ParquetConvert.ToCsv(input, outPath, parse.GetValue(delimiter) == "tab" ? '\t' : ',', o.Writer);
            }
            o.Line($"wrote {rows} rows of {input.Name} to {outPath} ({target})");
            o.Line($"read it with: --schema FILE{(source.Schema is null ? "" : " (the schema given here)")}");
            return 0;
        });
        return command;
    }
}
