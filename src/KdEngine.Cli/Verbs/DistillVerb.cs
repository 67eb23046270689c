using System.CommandLine;
using KdEngine.Cli.Options;
using KdEngine.Data;
using KdEngine.Distillation;
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
        var data = new DataOptions(inputSets: true);
        var split = new SplitOptionsGroup();
        var streaming = new StreamingOptionsGroup();
        var training = new TrainingOptions();
        var distributed = new DistributedOptions();
        var output = CliOptions.Required("--out", "FILE", "where to save the student checkpoint; eval/predict use it like any model");

        var command = new Command("distill",
            "Distil a teacher into a student (logits|hint|rocket|double-dnn|pfd|ensemble). The student is saved alone (for rocket and pfd: the light net with the shared " +
            "embeddings, nothing of the booster/teacher). logits/hint distil a frozen teacher (--teacher, or --teacher-logits for " +
            "logits); rocket, double-dnn and pfd co-train the teacher from the config; ensemble gates ≥ 2 teachers (two-stage from " +
            "--teacher/--teacher-logits, or joint from the config). With teachers, the data is encoded with their preprocessing. " +
            "The data streams as for train (--data cut by --split, or --train/--valid/--test; --shuffle-buffer, --cache); " +
            "--teacher-logits, a random split and --distributed mpi read --data into memory.");
        command.Options.Add(method);
        command.Options.Add(config);
        command.Options.Add(teachers);
        command.Options.Add(teacherLogits);
        data.AddTo(command);
        split.AddTo(command);
        streaming.AddTo(command);
        training.AddTo(command);
        distributed.AddTo(command);
        command.Options.Add(output);
        command.SetAction(parse => Run(parse, new CliOutput(parse.InvocationConfiguration.Output), parse.GetValue(method), parse.GetValue(config),
            parse.GetValue(teachers)!, parse.GetValue(teacherLogits)!, data, split, streaming, training, distributed, parse.GetValue(output)!));
        return command;
    }

    private static int Run(ParseResult parse, CliOutput o, DistillMethod method, string? configPath, string[] teacherPaths, string[] cachePaths,
        DataOptions dataOptions, SplitOptionsGroup split, StreamingOptionsGroup streaming, TrainingOptions training, DistributedOptions distributed, string output)
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

        // Frozen teachers fix the preprocessing: the student reads the ids the teachers were trained (and cached) on.
        var teacherModels = teacherPaths.Select(p => (Path: p, Loaded: CtrPipeline.Load(p))).ToArray();
        var caches = cachePaths.Select(p => (Path: p, Cache: TeacherLogitCache.Read(p))).ToArray();
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

        var settings = training.SettingsFrom(parse, new TrainingSettings
        {
            // ECKD stops on the validation distillation loss; cached logits are aligned to the train rows only.
            Metric = method == DistillMethod.Ensemble && caches.Length == 0 ? StoppingMetric.ObjectiveLoss : StoppingMetric.Auc,
        });
        if (fixedPre is not null && parse.Given(split.MinCount)) throw new CliException("distill: --min-count cannot apply: the teachers' preprocessing is used.");
        var splitOptions = split.SplitFrom(parse, settings.Seed);
        bool mpi = parse.GetValue(distributed.Mode) == "mpi";
        if (!mpi && splitOptions.Mode == SplitMode.Sequential && caches.Length == 0)
        {
            // Streamed: the same passes as train, the teachers' preprocessing when they fix it.
            StreamingInputs inputs;
            if (dataOptions.HasInputSets(parse))
            {
                var (trainSource, validSource, testSource) = dataOptions.InputSets(parse);
                inputs = StreamingInputs.Separate(Recipe(trainSource), Recipe(validSource), testSource is null ? null : Recipe(testSource));
            }
            else inputs = StreamingInputs.SplitOf(Recipe(dataOptions.Source(parse)), splitOptions.Ratios);
            DataSource Recipe(DataSource s) => fixedPre is null ? s
                : recipe is null ? s with { Schema = fixedPre.Schema }
                : DataSource.FromMetadata(s.Patterns, recipe, fixedPre.Schema, parse.GetValue(dataOptions.Format), parse.GetValue(dataOptions.Ranges)) with { ReaderOptions = s.ReaderOptions };
            var options = streaming.OptionsFrom(parse, dataOptions.Reader(parse), o.Writer, o.IsTerminal);
            using var streamed = StreamingPipeline.Prepare(inputs, split.PreprocessingFrom(parse), options, fixedPre);
            Report.Data(o, streamed);
            foreach (var pass in streamed.Passes)
                foreach (var line in pass.SkipSummary()) o.Line(line);
            var streamTeachers = teacherModels.Select(t => (ITeacher)new ModelTeacher(t.Loaded.Model)).ToList();
            var streamRun = DistillPipeline.Build(method, config, streamed.Fields, streamed.Privileged, streamTeachers);
            o.Line($"distill {DistillPipeline.Name(method)}: student {streamRun.Student.TypeName} ({streamRun.Student.ParameterCount():N0} parameters, {streamRun.Student.Fields.Count} fields); config {config.ToJson().ReplaceLineEndings(" ")}");
            var streamOutcome = o.Progress("distilling " + DistillPipeline.Name(method),
                (w, interactive) => StreamingPipeline.Fit(streamRun.Objective, streamed, settings, options.ShuffleBuffer, w, interactive));
            Report.Outcome(o, streamOutcome, "student ", hasTest: streamed.Test is not null);
            CtrPipeline.Save(output, streamRun.Student, streamed.Preprocessor, streamed.Source, new Dictionary<string, string>
            {
                ["distill.method"] = DistillPipeline.Name(method),
                ["distill.config"] = config.ToJson(),
            });
            o.Line($"saved student {output}");
            return 0;
        }
        if (dataOptions.HasInputSets(parse))
            throw new CliException("--train/--valid/--test stream; --teacher-logits, --split-mode random and --distributed mpi read one --data file into memory.");
        return distributed.Run(parse, o, settings.BatchSize, (group, o) =>
        {
            PreparedData data;
            if (fixedPre is null) data = CtrPipeline.PrepareShard(dataOptions.Source(parse), group, splitOptions, split.PreprocessingFrom(parse));
            else
            {
                var source = recipe is null ? dataOptions.Source(parse) with { Schema = fixedPre.Schema }
                    : DataSource.FromMetadata(parse.GetValue(dataOptions.Data)!, recipe, fixedPre.Schema, parse.GetValue(dataOptions.Format), parse.GetValue(dataOptions.Ranges));
                data = CtrPipeline.PrepareShard(source, group, splitOptions, fitted: fixedPre);
            }
            Report.Data(o, data, group);

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
            o.Line($"distill {DistillPipeline.Name(method)}: student {run.Student.TypeName} ({run.Student.ParameterCount():N0} parameters, {run.Student.Fields.Count} fields); config {config.ToJson().ReplaceLineEndings(" ")}");
            var outcome = o.Progress("distilling " + DistillPipeline.Name(method), (w, interactive) => CtrPipeline.Fit(run.Objective, data, settings, w, interactive, group));
            Report.Outcome(o, outcome, "student ");
            if (group.Rank == 0)
            {
                CtrPipeline.Save(output, run.Student, data.Preprocessor, data.Source, new Dictionary<string, string>
                {
                    ["distill.method"] = DistillPipeline.Name(method),
                    ["distill.config"] = config.ToJson(),
                });
                o.Line($"saved student {output}");
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
}
