using System.Globalization;
using KdEngine.Data;
using KdEngine.Distillation;
using KdEngine.Metrics;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Serving;
using KdEngine.Training;

namespace KdEngine.Cli;

/// <summary>The data, training and distillation verbs; each is a thin layer over <see cref="CtrPipeline"/>.</summary>
internal static class Commands
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    internal static readonly CliOption[] DataOptions =
    [
        new("data", "FILE", "data file (required)"),
        new("format", "FMT", "criteo|csv|libsvm|libffm|auto (default auto: .svm/.libfm → libsvm, .ffm → libffm, else criteo, or csv with --schema)"),
        new("schema", "FILE", "schema JSON (needed for csv; overrides a format's default schema)"),
        new("ranges", "SPEC", "libSVM field index ranges: name=start-end,… (half-open) | FxN (F fields of N indices) | @FILE"),
    ];

    internal static readonly CliOption[] SplitOptionsList =
    [
        new("split", "A:B:C", "train:validation:test ratios (default 8:1:1)"),
        new("split-mode", "MODE", "sequential|random (default sequential: time-ordered data)"),
        new("min-count", "N", "categories seen fewer times in the train part map to the OOV id (default 2)"),
    ];

    internal static readonly CliOption[] TrainingOptionsList =
    [
        new("epochs", "N", "maximum epochs (default 10)"),
        new("batch-size", "N", "mini-batch size (default 256)"),
        new("lr", "X", "learning rate (default 1e-3)"),
        new("optimizer", "NAME", "adam|adagrad|sgd (default adam)"),
        new("l2-embedding", "X", "L2 on the touched embedding rows (default 0)"),
        new("l2-dense", "X", "L2 on dense weights (default 0)"),
        new("clip", "X", "clip the global gradient norm at X (default off)"),
        new("patience", "N", "stop after N validations without a better validation AUC (default 2; 0 = never)"),
        new("seed", "N", "seed of the model init, the shuffling and a random split (default 1)"),
    ];

    // ---------------------------------------------------------------- train

    private static readonly CliOption[] TrainOptions =
    [
        new("model", "KIND", "lr|fm|dnn|wdl|deepfm|dcn|xdeepfm|ffm|dcnv2 (overrides the config's model)"),
        new("config", "FILE", "ModelConfig JSON (embeddingDim, dnn, cin, …; unknown keys rejected)"),
        .. DataOptions, .. SplitOptionsList, .. TrainingOptionsList, .. DistributedRun.Options,
        new("out", "FILE", "where to save the model checkpoint (.kde, safetensors)"),
    ];

    public static int Train(string[] args, TextWriter stdout)
    {
        var a = CliArgs.Parse("train", args, TrainOptions);
        if (a.Flag("help"))
        {
            stdout.WriteLine(CliArgs.Help("kdengine train --model KIND --data FILE [options] --out model.kde",
                "Reads the file, splits it (sequential 8:1:1 by default), fits the preprocessing on the train part only, trains with\n" +
                "early stopping on validation AUC, prints validation and test AUC/logloss and saves the model with its preprocessing.", TrainOptions));
            return 0;
        }
        string output = a.Required("out");
        var config = ModelConfigFrom(a);
        var settings = SettingsFrom(a, new TrainingSettings());
        var source = SourceFrom(a);
        return DistributedRun.Run(a, stdout, (group, stdout) =>
        {
            var data = CtrPipeline.PrepareShard(source, group, SplitFrom(a), PreprocessingFrom(a));
            PrintData(stdout, data, group);
            var model = CtrPipeline.BuildModel(config, data.Fields);
            stdout.WriteLine($"model: {model.TypeName}, {model.ParameterCount():N0} parameters; config {config.ToJson()}");
            var outcome = CtrPipeline.Train(model, data, settings, stdout, CliApp.IsTerminal(stdout), group);
            PrintOutcome(stdout, outcome);
            if (group.Rank == 0)
            {
                CtrPipeline.Save(output, model, data.Preprocessor, data.Source);
                stdout.WriteLine($"saved {output}");
            }
            return 0;
        });
    }

    // ---------------------------------------------------------------- eval / predict

    private static readonly CliOption[] EvalOptions =
    [
        new("model", "FILE", "model checkpoint (.kde) from train or distill (required)"),
        new("data", "FILE", "data file (required); read the way the model's training data was unless --format/--ranges say otherwise"),
        new("format", "FMT", "override the saved format (criteo|csv|libsvm|libffm)"),
        new("ranges", "SPEC", "override the saved libSVM ranges"),
    ];

    public static int Eval(string[] args, TextWriter stdout)
    {
        var a = CliArgs.Parse("eval", args, EvalOptions);
        if (a.Flag("help"))
        {
            stdout.WriteLine(CliArgs.Help("kdengine eval --model model.kde --data FILE",
                "Evaluates the whole file with the model's saved preprocessing: rows, AUC, logloss, calibration (mean prediction / click rate).", EvalOptions));
            return 0;
        }
        var loaded = CtrPipeline.Load(a.Required("model"));
        var data = EncodeFor(a, loaded);
        var result = Trainer.Evaluate(loaded.Model, data).Result;
        stdout.WriteLine($"model {Path.GetFileName(a.Required("model"))} ({loaded.Model.TypeName}) on {Path.GetFileName(a.Required("data"))}: {data.Count} rows");
        stdout.WriteLine($"AUC {result.Auc.ToString("F6", Inv)}  logloss {result.LogLoss.ToString("F6", Inv)}  calibration {result.Calibration.ToString("F4", Inv)}");
        return 0;
    }

    private static readonly CliOption[] PredictOptions =
    [
        .. EvalOptions,
        new("out", "FILE", "scores CSV: a header 'probability', then one probability per data row (required)"),
    ];

    public static int Predict(string[] args, TextWriter stdout)
    {
        var a = CliArgs.Parse("predict", args, PredictOptions);
        if (a.Flag("help"))
        {
            stdout.WriteLine(CliArgs.Help("kdengine predict --model model.kde --data FILE --out scores.csv",
                "Writes σ(logit) for every row of the file, in file order.", PredictOptions));
            return 0;
        }
        string output = a.Required("out");
        var loaded = CtrPipeline.Load(a.Required("model"));
        var data = EncodeFor(a, loaded);
        var logits = CtrPipeline.Logits(loaded.Model, data);
        var tmp = output + ".tmp";
        using (var w = new StreamWriter(tmp))
        {
            w.WriteLine("probability");
            foreach (var z in logits) w.WriteLine((1.0 / (1.0 + Math.Exp(-z))).ToString("G9", Inv));
        }
        File.Move(tmp, output, overwrite: true);
        stdout.WriteLine($"wrote {logits.Length} probabilities to {output}");
        return 0;
    }

    // ---------------------------------------------------------------- synth

    private static readonly CliOption[] SynthOptions =
    [
        new("rows", "N", "rows to write (required)"),
        new("fields", "F", "ordinary categorical fields C1..CF (default 10)"),
        new("privileged", "K", "privileged fields P1..PK that reveal extra signal (default 0)"),
        new("vocab", "V", "ids per ordinary field, Zipf-distributed (default 1000)"),
        new("format", "FMT", "criteo (TSV with a header) | libsvm (default criteo)"),
        new("seed", "S", "seed of the hidden model and the rows (default 1)"),
        new("out", "FILE", "data file to write (required); FILE.schema.json (and FILE.ranges.txt for libsvm) are written beside it"),
        .. SyntheticCli.ShapeOptions(new SyntheticCtrOptions()),
    ];

    public static int Synth(string[] args, TextWriter stdout)
    {
        var a = CliArgs.Parse("synth", args, SynthOptions);
        if (a.Flag("help"))
        {
            stdout.WriteLine(CliArgs.Help("kdengine synth --rows N [--fields F] [--privileged K] [--format criteo|libsvm] [--seed S] --out FILE",
                "Streams seeded synthetic CTR rows (Zipf ids, labels from a hidden model with pairwise and third-order interactions).\n" +
                "Read them back with --schema FILE.schema.json (privileged fields are marked there), and for libsvm --ranges @FILE.ranges.txt.", SynthOptions));
            return 0;
        }
        string output = a.Required("out");
        long rows = a.Int("rows", 0, 1);
        if (!a.Has("rows")) throw new CliException("synth: option '--rows' is required (see 'kdengine synth --help').");
        string format = (a.String("format") ?? "criteo").ToLowerInvariant();
        if (format is not ("criteo" or "libsvm")) throw new CliException($"synth: unknown format '{format}' (expected criteo|libsvm).");
        var gen = SyntheticCli.Create(SyntheticCli.ApplyShape(a, new SyntheticCtrOptions
        {
            Fields = a.Int("fields", 10, 1, 10_000),
            PrivilegedFields = a.Int("privileged", 0, 0, 10_000),
            VocabSize = a.Int("vocab", 1000, 1),
            Seed = a.Int("seed", 1),
        }));
        if (format == "criteo")
        {
            var tmp = output + ".tmp";
            using (var w = new StreamWriter(tmp))
            {
                w.Write(string.Join('\t', gen.Schema.Fields.Select(f => f.Name)) + "\n"); // a header, so the schema matches columns by name
                gen.WriteCriteoTsv(w, rows);
            }
            File.Move(tmp, output, overwrite: true);
        }
        else
        {
            gen.WriteLibSvm(output, rows);
            File.WriteAllText(output + ".ranges.txt", DataSource.FormatRanges(gen.LibSvmOptions().Ranges) + "\n");
        }
        File.WriteAllText(output + ".schema.json", gen.Schema.ToJson());
        stdout.WriteLine($"wrote {rows} rows ({gen.Options.Fields} fields + {gen.Options.PrivilegedFields} privileged, base CTR {gen.Options.BaseCtr}) to {output}");
        stdout.WriteLine($"generator: {SyntheticCli.Describe(gen.Options)}");
        stdout.WriteLine($"read it with: --schema {output}.schema.json" + (format == "libsvm" ? $" --ranges @{output}.ranges.txt" : ""));
        return 0;
    }

    // ---------------------------------------------------------------- cache-logits

    private static readonly CliOption[] CacheOptions =
    [
        new("model", "FILE", "teacher checkpoint (.kde) (required)"),
        new("data", "FILE", "data file (required)"),
        new("format", "FMT", "override the teacher's saved format"),
        new("ranges", "SPEC", "override the teacher's saved libSVM ranges"),
        new("out", "FILE", "cache file (default DATA.TEACHER.logits.safetensors beside the data)"),
    ];

    public static int CacheLogits(string[] args, TextWriter stdout)
    {
        var a = CliArgs.Parse("cache-logits", args, CacheOptions);
        if (a.Flag("help"))
        {
            stdout.WriteLine(CliArgs.Help("kdengine cache-logits --model teacher.kde --data FILE [--out FILE]",
                "Runs the teacher once over every row of the file and stores its logits (safetensors, with a fingerprint of the data)\n" +
                "for 'distill --teacher-logits'.", CacheOptions));
            return 0;
        }
        string modelPath = a.Required("model"), dataPath = a.Required("data");
        string output = a.String("out") ?? TeacherLogitCache.DefaultPath(dataPath, modelPath);
        var loaded = CtrPipeline.Load(modelPath);
        var data = EncodeFor(a, loaded);
        var logits = TeacherLogitCache.Compute(loaded.Model, data);
        TeacherLogitCache.Save(output, logits, data, Path.GetFileName(dataPath), Path.GetFileName(modelPath), loaded.Preprocessor);
        stdout.WriteLine($"cached {logits.Length} teacher logits of {Path.GetFileName(modelPath)} over {Path.GetFileName(dataPath)} in {output}");
        return 0;
    }

    // ---------------------------------------------------------------- distill

    private static readonly CliOption[] DistillOptions =
    [
        new("method", "M", "logits|hint|rocket|double-dnn|pfd|ensemble (required)"),
        new("config", "FILE", "kd.json: student/teacher model configs and the method's knobs (unknown keys rejected)"),
        new("teacher", "FILE", "pre-trained teacher checkpoint (logits, hint; repeat for a two-stage ensemble)", Repeatable: true),
        new("teacher-logits", "FILE", "teacher-logit cache from cache-logits (logits; repeat for an ensemble)", Repeatable: true),
        .. DataOptions, .. SplitOptionsList, .. TrainingOptionsList, .. DistributedRun.Options,
        new("out", "FILE", "where to save the student checkpoint (required); eval/predict use it like any model"),
    ];

    public static int Distill(string[] args, TextWriter stdout)
    {
        var a = CliArgs.Parse("distill", args, DistillOptions);
        if (a.Flag("help"))
        {
            stdout.WriteLine(CliArgs.Help("kdengine distill --method M --data FILE [--config kd.json] [--teacher model.kde …] --out student.kde",
                "Trains a student by distillation and saves the student alone (for rocket and pfd: the light net with the shared\n" +
                "embeddings, nothing of the booster/teacher). logits/hint distil a frozen teacher (--teacher, or --teacher-logits for\n" +
                "logits); rocket, double-dnn and pfd co-train the teacher from the config; ensemble gates ≥ 2 teachers (two-stage from\n" +
                "--teacher/--teacher-logits, or joint from the config). With teachers, the data is encoded with their preprocessing.", DistillOptions));
            return 0;
        }
        string output = a.Required("out");
        var method = DistillConfig.ParseMethod(a.Required("method"));
        var config = a.String("config") is { } cfgPath ? DistillConfig.Load(cfgPath) : new DistillConfig();
        if (a.OptionalInt("seed") is { } seed)
            config = config with
            {
                Seed = seed,
                Student = config.Student with { Seed = seed },
                Teacher = config.Teacher with { Seed = seed + 1000 },
                Teachers = config.Teachers.Select((t, i) => t with { Seed = seed + 1001 + i }).ToArray(),
            };

        // Frozen teachers fix the preprocessing: the student reads the ids the teachers were trained (and cached) on.
        var teacherModels = a.All("teacher").Select(p => (Path: p, Loaded: CtrPipeline.Load(p))).ToArray();
        var caches = a.All("teacher-logits").Select(p => (Path: p, Cache: TeacherLogitCache.Read(p))).ToArray();
        Preprocessor? fixedPre = null;
        IReadOnlyDictionary<string, string>? recipe = null;
        string? fixedFrom = null;
        foreach (var (path, loaded) in teacherModels) Adopt(path, loaded.Preprocessor!, loaded.Metadata);
        foreach (var (path, cache) in caches)
            Adopt(path, cache.Preprocessor ?? throw new CliException($"{Path.GetFileName(path)}: the teacher-logit cache has no preprocessing; recompute it with cache-logits."), null);
        void Adopt(string path, Preprocessor pre, IReadOnlyDictionary<string, string>? meta)
        {
            if (fixedPre is null) { fixedPre = pre; fixedFrom = path; recipe ??= meta; return; }
            if (pre.ToJson() != fixedPre.ToJson())
                throw new CliException($"distill: {Path.GetFileName(path)} was made with other preprocessing than {Path.GetFileName(fixedFrom!)}; teachers must share one preprocessing.");
            recipe ??= meta;
        }

        var settings = SettingsFrom(a, new TrainingSettings
        {
            // ECKD stops on the validation distillation loss; cached logits are aligned to the train rows only.
            Metric = method == DistillMethod.Ensemble && caches.Length == 0 ? StoppingMetric.ObjectiveLoss : StoppingMetric.Auc,
        });
        if (fixedPre is not null && a.Has("min-count")) throw new CliException("distill: --min-count cannot apply: the teachers' preprocessing is used.");
        return DistributedRun.Run(a, stdout, (group, stdout) =>
        {
            PreparedData data;
            if (fixedPre is null) data = CtrPipeline.PrepareShard(SourceFrom(a), group, SplitFrom(a), PreprocessingFrom(a));
            else
            {
                var source = recipe is null ? SourceFrom(a) with { Schema = fixedPre.Schema }
                    : DataSource.FromMetadata(a.Required("data"), recipe, fixedPre.Schema, FormatFrom(a), RangesFrom(a));
                data = CtrPipeline.PrepareShard(source, group, SplitFrom(a), fitted: fixedPre);
            }
            PrintData(stdout, data, group);

            var teachers = new List<ITeacher>();
            foreach (var (_, loaded) in teacherModels) teachers.Add(new ModelTeacher(loaded.Model));
            foreach (var (path, cache) in caches)
            {
                CheckCache(path, cache, data, group);
                // The trainer's batches carry rows of this rank's train part, so the cache is re-indexed to it (with
                // several ranks, SplitIndices hold this rank's file rows: each rank keeps only its shard of the cache).
                var trainRows = data.SplitIndices[0];
                var train = new float[trainRows.Length];
                for (int i = 0; i < train.Length; i++) train[i] = cache.Logits[trainRows[i]];
                teachers.Add(new CachedTeacher(train));
            }
            var run = DistillPipeline.Build(method, config, data, teachers);
            stdout.WriteLine($"distill {DistillPipeline.Name(method)}: student {run.Student.TypeName} ({run.Student.ParameterCount():N0} parameters, {run.Student.Fields.Count} fields); config {config.ToJson().ReplaceLineEndings(" ")}");
            var outcome = CtrPipeline.Fit(run.Objective, data, settings, stdout, CliApp.IsTerminal(stdout), group);
            PrintOutcome(stdout, outcome, "student ");
            if (group.Rank == 0)
            {
                CtrPipeline.Save(output, run.Student, data.Preprocessor, data.Source, new Dictionary<string, string>
                {
                    ["distill.method"] = DistillPipeline.Name(method),
                    ["distill.config"] = config.ToJson(),
                });
                stdout.WriteLine($"saved student {output}");
            }
            return 0;
        });
    }

    /// <summary>
    /// Checks a teacher-logit cache against the data. One process checks its fingerprint over every row; with several
    /// ranks no rank holds every row, so rank 0 encodes the whole file once for the check and tells the others.
    /// </summary>
    private static void CheckCache(string path, CachedLogits cache, PreparedData data, IProcessGroup group)
    {
        if (group.Size == 1) { TeacherLogitCache.Check(path, cache, data.All, data.Source.FileName); return; }
        string? verdict = null;
        if (group.Rank == 0)
        {
            try
            {
                TeacherLogitCache.Check(path, cache, CtrPipeline.Encode(data.Source, data.Preprocessor), data.Source.FileName);
                verdict = "";
            }
            catch (ArgumentException e) { verdict = e.Message; }
        }
        verdict = group.BroadcastText(verdict);
        if (verdict.Length > 0) throw new ArgumentException(verdict);
    }

    // ---------------------------------------------------------------- shared helpers

    internal static ModelKind ParseModel(string text)
    {
        try { return ZooExperimentConfig.KindOf(text.ToLowerInvariant()); }
        catch (ConfigException e) { throw new CliException(e.Message); }
    }

    private static ModelConfig ModelConfigFrom(CliArgs a)
    {
        ModelConfig config;
        if (a.String("config") is { } path)
        {
            if (!File.Exists(path)) throw new CliException($"{Path.GetFileName(path)}: config file not found ({Path.GetFullPath(path)}).");
            config = ModelConfig.FromJson(File.ReadAllText(path), Path.GetFileName(path));
        }
        else if (!a.Has("model")) throw new CliException("train: give --model KIND or --config FILE (see 'kdengine train --help').");
        else config = new ModelConfig();
        if (a.String("model") is { } kind) config = config with { Model = ParseModel(kind) };
        if (a.OptionalInt("seed") is { } seed) config = config with { Seed = seed };
        config.Validate();
        return config;
    }

    internal static TrainingSettings SettingsFrom(CliArgs a, TrainingSettings defaults)
    {
        var s = defaults with
        {
            Epochs = a.Int("epochs", defaults.Epochs, 1),
            BatchSize = a.Int("batch-size", defaults.BatchSize, 1),
            LearningRate = a.Float("lr") ?? defaults.LearningRate,
            Optimizer = a.String("optimizer") is { } o ? TrainingSettings.ParseOptimizer(o) : defaults.Optimizer,
            L2Embedding = a.Float("l2-embedding") ?? defaults.L2Embedding,
            L2Dense = a.Float("l2-dense") ?? defaults.L2Dense,
            ClipNorm = a.Float("clip") ?? defaults.ClipNorm,
            Patience = a.Int("patience", defaults.Patience, 0),
            Seed = a.Int("seed", defaults.Seed),
        };
        s.Validate("options");
        return s;
    }

    private static DataFormat FormatFrom(CliArgs a) => a.String("format") is { } f ? DataSource.ParseFormat(f) : DataFormat.Auto;

    private static IReadOnlyList<IndexRange>? RangesFrom(CliArgs a)
    {
        if (a.String("ranges") is not { } spec) return null;
        if (spec.StartsWith('@'))
        {
            var file = spec[1..];
            if (!File.Exists(file)) throw new CliException($"{Path.GetFileName(file)}: ranges file not found ({Path.GetFullPath(file)}).");
            spec = File.ReadAllText(file);
        }
        return DataSource.ParseRanges(spec);
    }

    internal static DataSource SourceFrom(CliArgs a)
    {
        Schema? schema = null;
        if (a.String("schema") is { } sp)
        {
            if (!File.Exists(sp)) throw new CliException($"{Path.GetFileName(sp)}: schema file not found ({Path.GetFullPath(sp)}).");
            schema = Schema.Load(sp);
        }
        return new DataSource(a.Required("data")) { Format = FormatFrom(a), Schema = schema, Ranges = RangesFrom(a) };
    }

    internal static SplitOptions SplitFrom(CliArgs a) => new()
    {
        Ratios = a.String("split") is { } s ? SplitOptions.ParseRatios(s) : [8, 1, 1],
        Mode = a.String("split-mode") is { } m ? SplitOptions.ParseMode(m) : SplitMode.Sequential,
        Seed = a.Int("seed", 1),
    };

    internal static PreprocessorOptions PreprocessingFrom(CliArgs a) => new() { MinCount = a.Int("min-count", 2, 1) };

    private static EncodedDataset EncodeFor(CliArgs a, LoadedModel loaded) =>
        CtrPipeline.EncodeFor(loaded, a.Required("data"), FormatFrom(a), RangesFrom(a));

    internal static void PrintData(TextWriter o, PreparedData d, IProcessGroup group)
    {
        if (group.Size > 1) o.Write($"rank {group.Rank}'s shard of ");
        PrintData(o, d);
    }

    internal static void PrintData(TextWriter o, PreparedData d)
    {
        o.WriteLine($"data: {d.Source.FileName} ({DataSource.FormatName(d.Source.ResolvedFormat)}), {d.Rows} rows → train {d.Train.Count} / validation {d.Validation.Count} / test {d.Test.Count}; " +
            $"{d.Fields.Count} fields, {d.Fields.Sum(f => (long)f.Cardinality):N0} ids; click rate {d.Train.LabelRate:F4} (train)");
    }

    internal static void PrintOutcome(TextWriter o, TrainOutcome r, string who = "")
    {
        o.WriteLine($"trained {r.Report.Steps} steps in {r.Report.Elapsed.TotalSeconds:F1} s{(r.Report.StoppedEarly ? " (stopped early)" : "")}; best validation at step {r.Report.Best?.Step}");
        o.WriteLine($"{who}validation AUC {r.Validation.Auc.ToString("F6", Inv)}  logloss {r.Validation.LogLoss.ToString("F6", Inv)}");
        o.WriteLine($"{who}test AUC {r.Test.Auc.ToString("F6", Inv)}  logloss {r.Test.LogLoss.ToString("F6", Inv)}");
    }

    internal static string Metric(EvaluationResult r) => $"{r.Auc.ToString("F4", Inv)} / {r.LogLoss.ToString("F4", Inv)}";
}
