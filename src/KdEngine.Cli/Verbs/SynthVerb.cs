using System.CommandLine;
using KdEngine.Cli.Options;
using KdEngine.Data;
using KdEngine.Pipelines;

namespace KdEngine.Cli.Verbs;

/// <summary><c>synth</c>: seeded synthetic CTR data (Criteo-like TSV or libSVM) with its schema beside it.</summary>
internal static class SynthVerb
{
    public static Command Create()
    {
        // The library's generator defaults, except the seed: the CLI's runs are seeded 1 like train's.
        var defaults = new SyntheticCtrOptions { Seed = 1 };
        var rows = CliOptions.Parsed("--rows", "N", "rows to write", text => long.TryParse(text, System.Globalization.NumberStyles.Integer,
            System.Globalization.CultureInfo.InvariantCulture, out long n) && n >= 1 ? n : throw new CliException($"expects an integer ≥ 1, got '{text}'."));
        rows.Required = true;
        var fields = CliOptions.Int("--fields", "F", "ordinary categorical fields C1..CF", defaults.Fields, 1, 10_000);
        var privileged = CliOptions.Int("--privileged", "K", "privileged fields P1..PK that reveal extra signal", defaults.PrivilegedFields, 0, 10_000);
        var vocab = CliOptions.Int("--vocab", "V", "ids per ordinary field, Zipf-distributed", defaults.VocabSize, 1);
        var format = CliOptions.Choice("--format", "criteo (TSV with a header) or libsvm", ["criteo", "libsvm"], "criteo");
        var seed = CliOptions.Int("--seed", "S", "seed of the hidden model and the rows", defaults.Seed);
        var output = CliOptions.Required("--out", "FILE",
            "data file to write; FILE.schema.json (and FILE.ranges.txt for libsvm) are written beside it");
        var shape = new SyntheticShapeOptions(defaults);

        var command = new Command("synth",
            "Write seeded synthetic CTR data: Zipf ids, labels from a hidden model with pairwise and third-order interactions. " +
            "Read them back with --schema FILE.schema.json (privileged fields are marked there), and for libsvm --ranges @FILE.ranges.txt.");
        foreach (var option in new Option[] { rows, fields, privileged, vocab, format, seed, output }) command.Options.Add(option);
        shape.AddTo(command);
        command.SetAction(parse =>
        {
            var o = new CliOutput(parse.InvocationConfiguration.Output);
            string outPath = parse.GetValue(output)!;
            long count = parse.GetValue(rows);
            string fmt = parse.GetValue(format)!;
            var gen = SyntheticShapeOptions.Create(shape.Apply(parse, defaults with
            {
                Fields = parse.GetValue(fields),
                PrivilegedFields = parse.GetValue(privileged),
                VocabSize = parse.GetValue(vocab),
                Seed = parse.GetValue(seed),
            }));
            if (fmt == "criteo")
            {
                var tmp = outPath + ".tmp";
                using (var w = new StreamWriter(tmp))
                {
                    w.Write(string.Join('\t', gen.Schema.Fields.Select(f => f.Name)) + "\n"); // a header, so the schema matches columns by name
                    gen.WriteCriteoTsv(w, count);
                }
                File.Move(tmp, outPath, overwrite: true);
            }
            else
            {
                gen.WriteLibSvm(outPath, count);
                File.WriteAllText(outPath + ".ranges.txt", DataSource.FormatRanges(gen.LibSvmOptions().Ranges) + "\n");
            }
            File.WriteAllText(outPath + ".schema.json", gen.Schema.ToJson());
            o.Line($"wrote {count} rows ({gen.Options.Fields} fields + {gen.Options.PrivilegedFields} privileged, base CTR {gen.Options.BaseCtr}) to {outPath}");
            o.Line($"generator: {SyntheticShapeOptions.Describe(gen.Options)}");
            o.Line($"read it with: --schema {outPath}.schema.json" + (fmt == "libsvm" ? $" --ranges @{outPath}.ranges.txt" : ""));
            return 0;
        });
        return command;
    }
}
