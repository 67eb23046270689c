using System.CommandLine;
using KdEngine.Cli.Options;
using KdEngine.Data;
using KdEngine.Distillation;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Training;

namespace KdEngine.Cli.Verbs;

/// <summary><c>distill</c>: a student trained by one distillation method, saved alone (eval/predict use it like any model).</summary>
internal static class DistillVerb
{
    public static Command Create()
    {
        var method = CliOptions.Parsed("--method", "logits|hint|rocket|double-dnn|pfd|ensemble", "the distillation method", DistillConfig.ParseMethod);
        method.Required = true;
        var config = CliOptions.Text("--config", "FILE", "kd.json: student/teacher model configs and the method's knobs (unknown keys rejected)");
        var teachers = CliOptions.Repeated("--teacher", "FILE", "pre-trained teacher checkpoint (logits, hint; repeat for a two-stage ensemble)");
        var teacherLogits = CliOptions.Repeated("--teacher-logits", "FILE", "teacher-logit cache from cache-logits (logits; repeat for an ensemble)");
        var teacherColumn = CliOptions.Repeated("--teacher-column", "NAME",
            "an external teacher's scores in a column of the data file (EasyRec's soft label; the file needs a header; repeatable)");
        var teacherFile = CliOptions.Repeated("--teacher-file", "FILE",
            "an external teacher's scores (a GBDT's, any model's) in a side file: one data row per data row in the same order (a 'row' " +
            "column and the label column, when present, are checked on every line) or, with --teacher-key, keyed by an id column; repeatable");
        var teacherKey = CliOptions.Text("--teacher-key", "COLUMN", "id column of both the data file and every --teacher-file: match scores by key instead of by row");
        var teacherScoreColumn = CliOptions.Text("--teacher-score-column", "NAME",
            "the score column of the --teacher-file side files (default: the only column that is not 'row', the label or the key)");
        var teacherScore = CliOptions.Choice("--teacher-score", "what --teacher-column/--teacher-file hold: logits, or probabilities (turned into logits)",
            ["logit", "probability"], "logit");
        var data = new DataOptions(inputSets: true);
        var split = new SplitOptionsGroup();
        var streaming = new StreamingOptionsGroup();
        var training = new TrainingOptions();
        var distributed = new DistributedOptions();
        var output = CliOptions.Required("--out", "FILE", "where to save the student checkpoint; eval/predict use it like any model");

        var command = new Command("distill",
            "Distil a teacher into a student (logits|hint|rocket|double-dnn|pfd|ensemble). The student is saved alone (for rocket and pfd: the light net with the shared " +
            "embeddings, nothing of the booster/teacher). logits/hint distil a frozen teacher (--teacher; for logits also --teacher-logits, " +
            "or an external teacher's scores: --teacher-column, --teacher-file); rocket, double-dnn and pfd co-train the teacher from the config; " +
            "ensemble combines ≥ 2 frozen teachers of any of those kinds (\"ensembleMode\": twoStage, a trained gate, stopped early on the " +
            "validation distillation loss; average, their mean) or trains its teachers jointly from the config. With teacher models or " +
            "caches, the data is encoded with their preprocessing. External scores travel with their rows, so they are right on every " +
            "split; a missing, extra, misaligned or non-finite score is refused naming the file and row. " +
            "The data streams as for train (--data cut by --split, or --train/--valid/--test; --shuffle-buffer, --cache); " +
            "teacher-logit caches and external scores stream too (one --data file cut by a sequential --split: checked in streaming passes, then read " +
            "per batch by row from memory-mapped files); a random split and --distributed mpi read --data into memory.");
        command.Options.Add(method);
        command.Options.Add(config);
        command.Options.Add(teachers);
        command.Options.Add(teacherLogits);
        command.Options.Add(teacherColumn);
        command.Options.Add(teacherFile);
        command.Options.Add(teacherKey);
        command.Options.Add(teacherScoreColumn);
        command.Options.Add(teacherScore);
        data.AddTo(command);
        split.AddTo(command);
        streaming.AddTo(command);
        training.AddTo(command);
        distributed.AddTo(command);
        command.Options.Add(output);
        command.SetAction(parse =>
        {
            var kind = parse.GetValue(teacherScore) == "probability" ? TeacherScoreKind.Probability : TeacherScoreKind.Logit;
            string? key = parse.GetValue(teacherKey), scoreColumn = parse.GetValue(teacherScoreColumn);
            var files = parse.GetValue(teacherFile)!;
            if (files.Length == 0 && (key is not null || scoreColumn is not null))
                throw new CliException($"distill: {(key is not null ? "--teacher-key" : "--teacher-score-column")} applies to --teacher-file, and none is given.");
            var external = parse.GetValue(teacherColumn)!.Select(c => TeacherScoreSource.FromColumn(c, kind))
                .Concat(files.Select(f => key is null ? TeacherScoreSource.FromFile(f, scoreColumn, kind) : TeacherScoreSource.FromKeyedFile(f, key, scoreColumn, kind)))
                .ToArray();
            return Run(parse, new CliOutput(parse.InvocationConfiguration.Output), parse.GetValue(method), parse.GetValue(config),
                parse.GetValue(teachers)!, parse.GetValue(teacherLogits)!, external, data, split, streaming, training, distributed, parse.GetValue(output)!);
        });
        return command;
    }

    private static int Run(ParseResult parse, CliOutput o, DistillMethod method, string? configPath, string[] teacherPaths, string[] cachePaths,
        TeacherScoreSource[] external, DataOptions dataOptions, SplitOptionsGroup split, StreamingOptionsGroup streaming, TrainingOptions training,
        DistributedOptions distributed, string output)
    {
        var config = configPath is not null ? DistillConfig.Load(configPath) : new DistillConfig();
        if (parse.Given(training.Seed))
        {
            int seed = parse.GetValue(training.Seed);
            config = config with
            {
                Seed = seed,
                Student = config.Student with { Seed = seed },
                Teacher = config.Teacher with { Seed = seed + 1000 },
                Teachers = config.Teachers.Select((t, i) => t with { Seed = seed + 1001 + i }).ToArray(),
            };
        }

        var inputs = DistillInputs.Load(teacherPaths, cachePaths);
        // Every method, the ensemble included, stops on the student's validation AUC. ECKD's own rule, the validation KD
        // term, is `--metric kd` (every teacher's logits, cached and external ones too, travel with the validation rows, so
        // it can be measured there); it is not the default because a learned gate moves the target the term is measured
        // against, and the term can be lowest at the first epoch while the student still improves (docs/training.md).
        var settings = distributed.Apply(parse, training.SettingsFrom(parse, new TrainingSettings { Metric = StoppingMetric.Auc }));
        if (inputs.Preprocessor is not null && parse.Given(split.MinCount)) throw new CliException("distill: --min-count cannot apply: the teachers' preprocessing is used.");
        var splitOptions = split.SplitFrom(parse, settings.Seed);
        bool mpi = parse.GetValue(distributed.Mode) == "mpi";
        // Row-sharded tables fetch each batch's rows from their owners, which the in-memory trainer and evaluator do.
        bool rowSharded = settings.EmbeddingSharding == KdEngine.Sharding.EmbeddingSharding.Row;
        if (!mpi && !rowSharded && splitOptions.Mode != SplitMode.Random)
        {
            // Streamed: the same passes as train, the teachers' preprocessing when they fix it; cached and external teacher
            // scores are checked in streaming passes and read per batch by row ordinal from memory-mapped files.
            var options = streaming.OptionsFrom(parse, dataOptions.Reader(parse), o.Writer, o.IsTerminal);
            using var streamed = inputs.PrepareStreamed(parse, dataOptions, split, splitOptions, options, external, "distill");
            Report.Data(o, streamed);
            foreach (var pass in streamed.Passes)
                foreach (var line in pass.SkipSummary()) o.Line(line);
            // One process: every model of the run gets the table layout (and its budget) as on one rank.
            var group = SingleProcess.Instance;
            var placement = settings.TablePlacement(group);
            using var layout = placement.Use();
            var streamTeachers = inputs.StreamedTeachers(streamed);
            if (external.Length > 0) o.Line($"external teacher scores: {string.Join("; ", external.Select(e => e.ToString()))}");
            var streamRun = DistillPipeline.Build(method, config, streamed.Fields, streamed.Privileged, streamTeachers);
            o.Line($"distill {DistillPipeline.Name(method)}: student {streamRun.Student.TypeName} ({ZooModel.ParameterCount(streamRun.Student.Config, streamRun.Student.Fields):N0} parameters, {streamRun.Student.Fields.Count} fields); config {config.ToJson().ReplaceLineEndings(" ")}");
            o.Line(DistributedOptions.Describe(placement, group));
            o.Line($"training: {settings.Describe()}");
            var streamOutcome = o.Progress("distilling " + DistillPipeline.Name(method),
                (w, interactive) => StreamingPipeline.Fit(streamRun.Objective, streamed, settings, options.ShuffleBuffer, w, interactive));
            Report.Outcome(o, streamOutcome, "student ", hasTest: streamed.Test is not null);
            var streamCalibration = Report.Calibrate(o, streamRun.Student, streamed, parse.GetValue(training.Calibration), "student ");
            CtrPipeline.Save(output, streamRun.Student, streamed.Preprocessor, streamed.Source, new Dictionary<string, string>
            {
                ["distill.method"] = DistillPipeline.Name(method),
                ["distill.config"] = config.ToJson(),
            }, group, streamCalibration);
            o.Line($"saved student {output}");
            return 0;
        }
        if (dataOptions.HasInputSets(parse))
            throw new CliException("--train/--valid/--test stream; --split-mode random, --distributed mpi and --embedding-sharding row read one --data file into memory.");
        return distributed.Run(parse, o, settings.BatchSize, (group, o) =>
        {
            var data = inputs.Prepare(parse, dataOptions, distributed, split, splitOptions, group);
            Report.Data(o, data, group);
            // Every model of the run — frozen teachers, co-trained teachers, the student — gets the run's table layout.
            var placement = settings.TablePlacement(group);
            using var layout = placement.Use();
            var teachers = inputs.Teachers(ref data, group, external, o);
            var run = DistillPipeline.Build(method, config, data, teachers);
            o.Line($"distill {DistillPipeline.Name(method)}: student {run.Student.TypeName} ({ZooModel.ParameterCount(run.Student.Config, run.Student.Fields):N0} parameters, {run.Student.Fields.Count} fields); config {config.ToJson().ReplaceLineEndings(" ")}");
            o.Line(DistributedOptions.Describe(placement, group));
            o.Line($"training: {settings.Describe()}");
            var outcome = o.Progress("distilling " + DistillPipeline.Name(method), (w, interactive) => CtrPipeline.Fit(run.Objective, data, settings, w, interactive, group));
            Report.Outcome(o, outcome, "student ");
            var calibration = Report.Calibrate(o, run.Student, data, parse.GetValue(training.Calibration), group, "student ");
            // Every rank: rank 0 writes; with row-sharded tables the others stream their rows to it.
            CtrPipeline.Save(output, run.Student, data.Preprocessor, data.Source, new Dictionary<string, string>
            {
                ["distill.method"] = DistillPipeline.Name(method),
                ["distill.config"] = config.ToJson(),
            }, group, calibration);
            if (group.Rank == 0) o.Line($"saved student {output}");
            return 0;
        });
    }

    /// <summary>
    /// Checks a teacher-logit cache against the data. One process checks its fingerprint over every row; with several
    /// ranks no rank holds every row, so rank 0 encodes the whole file once for the check and tells the others.
    /// </summary>
    internal static void CheckCache(string path, CachedLogits cache, PreparedData data, IProcessGroup group)
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
}

/// <summary>
/// What a distillation reads besides its config: frozen teachers (checkpoints) and teacher-logit caches, which fix the
/// preprocessing (the student reads the ids the teachers were trained and cached on). Shared by distill and tune.
/// </summary>
internal sealed class DistillInputs
{
    public (string Path, (Preprocessor Preprocessor, IReadOnlyDictionary<string, string> Metadata) Loaded)[] Models { get; private init; } = [];
    /// <summary>The teacher-logit caches' headers (their logits are read when used: in place when streamed, loaded in memory otherwise).</summary>
    public (string Path, TeacherLogitCacheHeader Cache)[] Caches { get; private init; } = [];
    /// <summary>The teachers' shared preprocessing; null when no teacher is given.</summary>
    public Preprocessor? Preprocessor { get; private set; }
    private IReadOnlyDictionary<string, string>? _recipe;

    /// <summary>How the teachers' data was read (their checkpoint metadata), when a teacher model gives it.</summary>
    public IReadOnlyDictionary<string, string>? Recipe => _recipe;
    private string? _fixedFrom;

    public static DistillInputs Load(string[] teacherPaths, string[] cachePaths)
    {
        var inputs = new DistillInputs
        {
            Models = teacherPaths.Select(p => (p, CtrPipeline.ReadPreprocessing(p))).ToArray(),
            Caches = cachePaths.Select(p => (p, TeacherLogitCache.ReadHeader(p))).ToArray(),
        };
        foreach (var (path, loaded) in inputs.Models) inputs.Adopt(path, loaded.Preprocessor!, loaded.Metadata);
        foreach (var (path, cache) in inputs.Caches)
            inputs.Adopt(path, cache.Preprocessor ?? throw new CliException($"{Path.GetFileName(path)}: the teacher-logit cache has no preprocessing; recompute it with cache-logits."), null);
        return inputs;
    }

    private void Adopt(string path, Preprocessor pre, IReadOnlyDictionary<string, string>? meta)
    {
        if (Preprocessor is null) { Preprocessor = pre; _fixedFrom = path; _recipe ??= meta; return; }
        if (pre.ToJson() != Preprocessor.ToJson())
            throw new CliException($"distill: {Path.GetFileName(path)} was made with other preprocessing than {Path.GetFileName(_fixedFrom!)}; teachers must share one preprocessing.");
        _recipe ??= meta;
    }

    /// <summary>
    /// The data streamed as <c>train</c> streams it (one file cut by a sequential or hash split, or input sets), encoded
    /// with the teachers' preprocessing and read the way their data was when they fix it; cached and external teacher
    /// scores are checked in streaming passes and attached to the parts, read per batch by row ordinal.
    /// </summary>
    public StreamedData PrepareStreamed(ParseResult parse, DataOptions dataOptions, SplitOptionsGroup split, SplitOptions splitOptions,
        StreamingOptions options, TeacherScoreSource[] external, string verb)
    {
        if ((Caches.Length > 0 || external.Length > 0) && dataOptions.HasInputSets(parse))
            throw new CliException($"{verb}: --teacher-logits and --teacher-column/--teacher-file index the rows of one data file: give --data FILE with a sequential --split, not --train/--valid/--test.");
        var fixedPre = Preprocessor;
        StreamingInputs streamInputs;
        if (dataOptions.HasInputSets(parse))
        {
            var (trainSource, validSource, testSource) = dataOptions.InputSets(parse);
            streamInputs = StreamingInputs.Separate(Recipe(trainSource), Recipe(validSource), testSource is null ? null : Recipe(testSource));
        }
        else streamInputs = StreamingInputs.SplitOf(Recipe(dataOptions.Source(parse)), splitOptions.Ratios, splitOptions.Mode, splitOptions.Seed);
        DataSource Recipe(DataSource s) => fixedPre is null ? s
            : _recipe is null ? s with { Schema = fixedPre.Schema }
            : DataSource.FromMetadata(s.Patterns, _recipe, fixedPre.Schema, parse.GetValue(dataOptions.Format), parse.GetValue(dataOptions.Ranges)) with { ReaderOptions = s.ReaderOptions };
        var streamed = StreamingPipeline.Prepare(streamInputs, split.PreprocessingFrom(parse), options, fixedPre);
        try
        {
            if (Caches.Length > 0 || external.Length > 0)
                StreamedTeacherScores.Attach(streamed, Caches.Select(c => c.Path).ToArray(), external, options);
            return streamed;
        }
        catch
        {
            streamed.Dispose();
            throw;
        }
    }

    /// <summary>The frozen teachers of streamed data: the models, then one <see cref="ExternalTeacher"/> per attached score column.</summary>
    public List<ITeacher> StreamedTeachers(StreamedData streamed)
    {
        var list = Models.Select(t => (ITeacher)new ModelTeacher(CtrPipeline.Load(t.Path).Model)).ToList();
        if (streamed.TeacherScores is { } scores)
            for (int c = 0; c < scores.Count; c++) list.Add(new ExternalTeacher(c, scores.Names[c]));
        return list;
    }

    /// <summary>The data file, split, encoded with the teachers' preprocessing when there are teachers (fitted on train otherwise).</summary>
    public PreparedData Prepare(ParseResult parse, DataOptions dataOptions, DistributedOptions? distributed, SplitOptionsGroup split, SplitOptions splitOptions, IProcessGroup group)
    {
        PreparedData Shard(DataSource source, PreprocessorOptions? options = null, Preprocessor? fitted = null) =>
            distributed is not null ? distributed.Prepare(parse, source, group, splitOptions, options, fitted)
                : CtrPipeline.PrepareShard(source, group, splitOptions, options, fitted);
        if (Preprocessor is null) return Shard(dataOptions.Source(parse), split.PreprocessingFrom(parse));
        var source = _recipe is null ? dataOptions.Source(parse) with { Schema = Preprocessor.Schema }
            : DataSource.FromMetadata(parse.GetValue(dataOptions.Data)!, _recipe, Preprocessor.Schema, parse.GetValue(dataOptions.Format), parse.GetValue(dataOptions.Ranges));
        return Shard(source, fitted: Preprocessor);
    }

    /// <summary>
    /// The frozen teachers over this data: models, then caches and external scores (checked first), which become columns
    /// of the data — [file rows, K] logits attached to every part by the parts' file rows, so random splits and each
    /// rank's shard get their own rows' scores — read by <see cref="ExternalTeacher"/>s.
    /// </summary>
    public List<ITeacher> Teachers(ref PreparedData data, IProcessGroup group, TeacherScoreSource[]? external = null, CliOutput? o = null)
    {
        var teachers = new List<ITeacher>();
        // Teacher weights load here, inside the caller's table layout (row-sharded: each rank its rows).
        foreach (var (path, _) in Models) teachers.Add(new ModelTeacher(CtrPipeline.Load(path).Model));
        var columns = new List<(string Name, float[] ByRecord)>();
        foreach (var (path, _) in Caches)
        {
            var cache = TeacherLogitCache.Read(path);
            DistillVerb.CheckCache(path, cache, data, group);
            columns.Add((Path.GetFileName(path), cache.Logits));
        }
        if (external is { Length: > 0 })
        {
            var read = TeacherScores.Read(external, data.Source.Open());
            for (int k = 0; k < external.Length; k++)
                columns.Add((external[k].ToString(), Enumerable.Range(0, read.Length / external.Length).Select(r => read[r * external.Length + k]).ToArray()));
            o?.Line($"external teacher scores: {string.Join("; ", external.Select(e => e.ToString()))}");
        }
        if (columns.Count > 0)
        {
            int k = columns.Count;
            long rows = columns[0].ByRecord.Length;
            var byRecord = new float[rows * k];
            for (int c = 0; c < k; c++)
            {
                if (columns[c].ByRecord.Length != rows)
                    throw new CliException($"distill: {columns[c].Name} holds {columns[c].ByRecord.Length} rows but {columns[0].Name} {rows}.");
                for (long r = 0; r < rows; r++) byRecord[r * k + c] = columns[c].ByRecord[r];
            }
            data = data.WithTeacherLogits(byRecord, k);
            for (int c = 0; c < k; c++) teachers.Add(new ExternalTeacher(c, columns[c].Name));
        }
        return teachers;
    }
}
