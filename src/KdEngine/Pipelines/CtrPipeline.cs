using System.Diagnostics;
using KdEngine.Autograd;
using KdEngine.Data;
using KdEngine.Metrics;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Serving;
using KdEngine.Training;

namespace KdEngine.Pipelines;

/// <summary>How a file is cut into train / validation / test.</summary>
public sealed record SplitOptions
{
    /// <summary>Three positive ratios (train, validation, test); 8:1:1 by default.</summary>
    public IReadOnlyList<double> Ratios { get; init; } = [8, 1, 1];
    /// <summary>Sequential (the file's order: time-ordered data), random (a seeded permutation) or hash (a seeded hash of each row's ordinal; streams).</summary>
    public SplitMode Mode { get; init; } = SplitMode.Sequential;
    /// <summary>Seed of the permutation or the hash (random and hash modes).</summary>
    public int Seed { get; init; }

    /// <summary>Parses <c>8:1:1</c>.</summary>
    public static IReadOnlyList<double> ParseRatios(string text)
    {
        var parts = text.Split(':');
        var ratios = new double[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!double.TryParse(parts[i], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out ratios[i]) || !(ratios[i] > 0))
                throw new ArgumentException($"split '{text}': '{parts[i]}' is not a positive number (expected e.g. 8:1:1).");
        if (ratios.Length != 3) throw new ArgumentException($"split '{text}': expected three ratios train:validation:test (e.g. 8:1:1).");
        return ratios;
    }

    /// <summary>Parses <c>sequential</c>, <c>random</c> or <c>hash</c> (case-insensitive); anything else is an <see cref="ArgumentException"/>.</summary>
    public static SplitMode ParseMode(string text) => text.ToLowerInvariant() switch
    {
        "sequential" => SplitMode.Sequential,
        "random" => SplitMode.Random,
        "hash" => SplitMode.Hash,
        _ => throw new ArgumentException($"unknown split mode '{text}' (expected sequential|random|hash)."),
    };
}

/// <summary>A file read, split, preprocessed (fitted on the train part only) and encoded.</summary>
public sealed record PreparedData(
    DataSource Source,
    Preprocessor Preprocessor,
    EncodedDataset Train,
    EncodedDataset Validation,
    EncodedDataset Test,
    IReadOnlyList<InputField> Fields,
    IReadOnlyList<int[]> SplitIndices,
    EncodedDataset All)
{
    /// <summary>Rows in the file (all three parts).</summary>
    public int Rows => Train.Count + Validation.Count + Test.Count;

    /// <summary>Whether input field i is declared privileged in the schema (teacher-only).</summary>
    public IReadOnlyList<bool> Privileged => Preprocessor.FeatureSpace.Fields.Select(f => f.Privileged).ToArray();

    /// <summary>
    /// The same data with external teacher logits attached to every part: <paramref name="byRecord"/> is
    /// [records of the file, <paramref name="teachers"/>] row-major in file order (record r's scores at r·K …), e.g.
    /// from <see cref="TeacherScores.Read(IReadOnlyList{TeacherScoreSource}, RecordReader)"/> or a teacher-logit cache. Each part takes the rows it holds by their file
    /// row (<see cref="SplitIndices"/>), so the pairing is right under a random split and on a rank's shard; the
    /// scores then travel with their rows into every batch (read them with
    /// <see cref="KdEngine.Distillation.ExternalTeacher"/>). Replaces logits attached before.
    /// </summary>
    public PreparedData WithTeacherLogits(float[] byRecord, int teachers)
    {
        ArgumentNullException.ThrowIfNull(byRecord);
        if (teachers < 1) throw new ArgumentOutOfRangeException(nameof(teachers), $"WithTeacherLogits: teachers must be ≥ 1, got {teachers}.");
        if (byRecord.Length % teachers != 0)
            throw new ArgumentException($"WithTeacherLogits: {byRecord.Length} logits are not a whole number of rows of {teachers}.", nameof(byRecord));
        long records = byRecord.Length / teachers;
        EncodedDataset Attach(EncodedDataset part, IReadOnlyList<int> fileRows)
        {
            if (fileRows.Count != part.Count) throw new InvalidOperationException($"WithTeacherLogits: a part holds {part.Count} rows but lists {fileRows.Count} file rows.");
            var logits = new float[part.Count * teachers];
            for (int i = 0; i < fileRows.Count; i++)
            {
                int r = fileRows[i];
                if ((uint)r >= records)
                    throw new ArgumentException($"WithTeacherLogits: the scores cover {records} rows of {Source.FileName}, but the data has row {r} (0-based); were they computed over another file?", nameof(byRecord));
                byRecord.AsSpan(r * teachers, teachers).CopyTo(logits.AsSpan(i * teachers, teachers));
            }
            return part.WithTeacherLogits(logits, teachers);
        }
        var allRows = SplitIndices.SelectMany(p => p).Order().ToArray(); // All holds the parts' rows in file order
        return this with
        {
            Train = Attach(Train, SplitIndices[0]),
            Validation = Attach(Validation, SplitIndices[1]),
            Test = Attach(Test, SplitIndices[2]),
            All = Attach(All, allRows),
        };
    }
}

/// <summary>The outcome of one supervised or distillation run, evaluated on the validation and test parts.</summary>
public sealed record TrainOutcome(TrainingReport Report, EvaluationResult Validation, EvaluationResult Test);

/// <summary>
/// The library-level CTR pipeline shared by the CLI, the tests and the experiments: load → split → fit the
/// preprocessing on the train part → encode → build a model → train with early stopping → evaluate → save/load with
/// the preprocessing and the reading recipe.
/// </summary>
public static class CtrPipeline
{
    /// <summary>
    /// Reads every row of <paramref name="source"/>, splits the raw records by <paramref name="split"/>, fits the
    /// preprocessor on the train records only, and encodes all rows (the rows of each part keep file order).
    /// Holds the file in memory (fine for samples up to a few million rows).
    /// </summary>
    /// <param name="source">The data file and its format.</param>
    /// <param name="split">Split ratios and mode (null: <see cref="SplitOptions"/>'s defaults).</param>
    /// <param name="preprocessing">Preprocessing options (null: <see cref="PreprocessorOptions"/>'s defaults).</param>
    /// <param name="teacherScores">External teachers' scores to read alongside the rows (a column of this file, or side
    /// files), validated and attached to every part (<see cref="PreparedData.WithTeacherLogits"/>); null or empty: none.</param>
    public static PreparedData Prepare(DataSource source, SplitOptions? split = null, PreprocessorOptions? preprocessing = null,
        IReadOnlyList<TeacherScoreSource>? teacherScores = null) =>
        PrepareCore(source, split, records => Preprocessor.Fit(records.Schema, records.TrainRows, preprocessing), teacherScores);

    /// <summary>As <see cref="Prepare"/>, but encodes with an already fitted <paramref name="preprocessor"/> (e.g. a teacher's), fitting nothing.</summary>
    public static PreparedData PrepareWith(DataSource source, Preprocessor preprocessor, SplitOptions? split = null,
        IReadOnlyList<TeacherScoreSource>? teacherScores = null) =>
        PrepareCore(source with { Format = source.ResolvedFormat, Schema = preprocessor.Schema }, split, _ => preprocessor, teacherScores);

    private sealed record RawParts(Schema Schema, IEnumerable<RawRecord> TrainRows);

    private static PreparedData PrepareCore(DataSource source, SplitOptions? split, Func<RawParts, Preprocessor> preprocess,
        IReadOnlyList<TeacherScoreSource>? teacherScores)
    {
        split ??= new SplitOptions();
        var reader = source.Open();
        var records = reader.ToList();
        var parts = DataSplit.Indices(records.Count, split.Ratios, split.Mode, split.Seed);
        if (parts.Length != 3) throw new ArgumentException($"split: expected three parts (train, validation, test), got {parts.Length}.");
        for (int k = 0; k < 3; k++)
            if (parts[k].Length == 0)
                throw new ArgumentException($"{source.FileName}: the {PartName(k)} part of a {string.Join(":", split.Ratios)} split of {records.Count} rows is empty; use more rows.");
        var scores = teacherScores is { Count: > 0 } ? TeacherScores.Read(teacherScores, source.Path, reader.Schema, records, reader.SkippedRows) : null;
        var preprocessor = preprocess(new RawParts(reader.Schema, parts[0].Select(i => records[i])));
        var fields = InputFields(preprocessor.FeatureSpace);
        var all = preprocessor.EncodeAll(records);
        // The format is resolved before the schema is attached (a schema would turn Auto into CSV).
        var prepared = new PreparedData(source with { Format = source.ResolvedFormat, Schema = reader.Schema }, preprocessor,
            all.Select(parts[0]), all.Select(parts[1]), all.Select(parts[2]), fields, parts, all);
        return scores is null ? prepared : prepared.WithTeacherLogits(scores, teacherScores!.Count);
    }

    /// <summary>
    /// This rank's shard of <paramref name="source"/> for data-parallel training: the file is split exactly as
    /// <see cref="Prepare"/> splits it, and rank r of N keeps the rows at positions p ≡ r (mod N) of each part
    /// (<see cref="Shard"/>). Rank 0 fits the preprocessing on the whole train part, streamed (only the vocabulary
    /// counts are held), and broadcasts it, so every rank encodes with exactly the preprocessor one process would
    /// have fitted; each rank holds only its own rows. <see cref="PreparedData.SplitIndices"/> hold the file row
    /// numbers of this rank's rows (so a teacher-logit cache of the whole file is sharded by indexing it with them);
    /// <see cref="PreparedData.All"/> is this rank's rows of all three parts. Every rank reads (parses) the whole file:
    /// twice, rank 0 three times. With a group of one this is <see cref="Prepare"/>.
    /// </summary>
    /// <param name="source">The data file and how to read it; every rank must name the same file.</param>
    /// <param name="group">The processes training together; this process is rank <c>group.Rank</c> of <c>group.Size</c>.</param>
    /// <param name="split">How the file is cut (default sequential 8:1:1).</param>
    /// <param name="preprocessing">Fitting options (min-count, hashing) when <paramref name="fitted"/> is null.</param>
    /// <param name="fitted">An already fitted preprocessor (a teacher's) to encode with instead of fitting one.</param>
    /// <param name="teacherScores">As in <see cref="Prepare"/>; every rank reads the scores of the whole file and keeps its rows'.</param>
    public static PreparedData PrepareShard(DataSource source, IProcessGroup group, SplitOptions? split = null,
        PreprocessorOptions? preprocessing = null, Preprocessor? fitted = null, IReadOnlyList<TeacherScoreSource>? teacherScores = null)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (group.Size == 1) return fitted is null ? Prepare(source, split, preprocessing, teacherScores) : PrepareWith(source, fitted, split, teacherScores);
        split ??= new SplitOptions();
        if (fitted is not null) source = source with { Format = source.ResolvedFormat, Schema = fitted.Schema };
        var reader = source.Open();
        int count = 0;
        foreach (var _ in reader) count++;
        var parts = DataSplit.Indices(count, split.Ratios, split.Mode, split.Seed);
        if (parts.Length != 3) throw new ArgumentException($"split: expected three parts (train, validation, test), got {parts.Length}.");
        for (int k = 0; k < 3; k++)
            if (parts[k].Length < group.Size)
                throw new ArgumentException($"{source.FileName}: the {PartName(k)} part of a {string.Join(":", split.Ratios)} split of {count} rows has {parts[k].Length} rows, fewer than the {group.Size} ranks; use more rows.");
        Preprocessor preprocessor;
        if (fitted is not null) preprocessor = fitted;
        else
        {
            string? json = null;
            if (group.Rank == 0)
            {
                var isTrain = new bool[count];
                foreach (int i in parts[0]) isTrain[i] = true;
                json = Preprocessor.Fit(reader.Schema, reader.Where((_, i) => isTrain[i]), preprocessing).ToJson();
            }
            preprocessor = Preprocessor.FromJson(group.BroadcastText(json), "the preprocessing fitted on rank 0");
        }
        var mine = parts.Select(p => Shard.Of(p, group.Rank, group.Size)).ToArray();
        var localOf = new int[count];
        Array.Fill(localOf, -1);
        var keep = mine.SelectMany(p => p).Order().ToArray();
        for (int j = 0; j < keep.Length; j++) localOf[keep[j]] = j;
        var records = reader.Where((_, i) => localOf[i] >= 0).ToList();
        var fields = InputFields(preprocessor.FeatureSpace);
        var all = preprocessor.EncodeAll(records);
        EncodedDataset Part(int k) => all.Select(mine[k].Select(i => localOf[i]).ToArray());
        var prepared = new PreparedData(source with { Format = source.ResolvedFormat, Schema = reader.Schema }, preprocessor,
            Part(0), Part(1), Part(2), fields, mine, all);
        if (teacherScores is not { Count: > 0 }) return prepared;
        return prepared.WithTeacherLogits(TeacherScores.Read(teacherScores, source.Path, reader.Schema, reader, reader.SkippedRows), teacherScores.Count);
    }

    private static string PartName(int k) => k switch { 0 => "train", 1 => "validation", _ => "test" };

    /// <summary>Every row of an input set (several files, gzip, Parquet) encoded into memory on all cores, in file order.</summary>
    public static EncodedDataset Encode(InputSet input, Preprocessor preprocessor, PassOptions? pass = null)
    {
        input.Check();
        var builder = new EncodedDatasetBuilder(preprocessor.FeatureSpace);
        foreach (var block in DataPasses.Encode(input, preprocessor, null, pass)) builder.AddRange(block, 0, block.Count);
        var encoded = builder.Build();
        InputFields(encoded.FeatureSpace);
        return encoded;
    }

    /// <summary>Encodes the whole file with an already fitted preprocessor (evaluation, prediction, teacher caches).</summary>
    public static EncodedDataset Encode(DataSource source, Preprocessor preprocessor)
    {
        var encoded = preprocessor.EncodeAll(source.Open());
        InputFields(encoded.FeatureSpace);
        return encoded;
    }

    /// <summary>
    /// The model inputs of a feature space in schema order (see <see cref="ModelInputs.From"/>): single-valued fields
    /// (optionally scaled by their dense value) and multi-valued fields pooled by sum or mean.
    /// </summary>
    public static IReadOnlyList<InputField> InputFields(FeatureSpace space) => ModelInputs.From(space).Fields;

    /// <summary>A fresh model over <paramref name="fields"/>, each reading its batch column (<see cref="ModelInputs.ColumnsOf"/>).</summary>
    public static ZooModel BuildModel(ModelConfig config, IReadOnlyList<InputField> fields) => new(config, fields, ModelInputs.ColumnsOf(fields));

    /// <summary>
    /// Trains any objective with the settings and evaluates its predictor on the validation and test parts. With a
    /// <paramref name="group"/> of several processes, <paramref name="data"/> is this rank's shard
    /// (<see cref="PrepareShard"/>), training is data-parallel and the metrics cover every rank's shard.
    /// </summary>
    public static TrainOutcome Fit(IObjective objective, PreparedData data, TrainingSettings settings, TextWriter? progress = null, bool interactive = false,
        IProcessGroup? group = null)
    {
        settings.Validate();
        var optimizer = settings.BuildOptimizer(objective.Trainable.Parameters().Select(p => p.Tensor));
        var report = WideFirst.Fit(objective, optimizer, settings, settings.ToTrainerOptions(),
            (options, stageObjective, stageOptimizer) => new Trainer(options, progress, interactive, group).Fit(stageObjective, stageOptimizer, data.Train, data.Validation),
            group is null || group.Rank == 0 ? progress : null);
        var valid = Trainer.Evaluate(objective.Predictor, data.Validation, 1024, group).Result;
        var test = Trainer.Evaluate(objective.Predictor, data.Test, 1024, group).Result;
        return new TrainOutcome(report, valid, test);
    }

    /// <summary>Supervised training of <paramref name="model"/> (BCE on the labels); see <see cref="Fit"/> for <paramref name="group"/>.</summary>
    public static TrainOutcome Train(ZooModel model, PreparedData data, TrainingSettings settings, TextWriter? progress = null, bool interactive = false,
        IProcessGroup? group = null) =>
        Fit(new SupervisedObjective(model), data, settings, progress, interactive, group);

    /// <summary>Saves the model with its preprocessing, the way its data was read and (optionally) its post-hoc calibration.</summary>
    public static void Save(string path, ZooModel model, Preprocessor preprocessor, DataSource source, IReadOnlyDictionary<string, string>? extra = null,
        LogitCalibration? calibration = null)
    {
        var meta = new Dictionary<string, string>(source.ToMetadata(), StringComparer.Ordinal);
        if (extra is not null) foreach (var (k, v) in extra) meta[k] = v;
        ModelCheckpoint.Save(path, model, preprocessor, meta, calibration);
    }

    /// <summary>
    /// Fits a post-hoc calibration (temperature or Platt scaling) of <paramref name="model"/>'s logits on
    /// <paramref name="validation"/> — never on test data; save it with the model and every reader applies it.
    /// </summary>
    public static LogitCalibration FitCalibration(CtrModel model, EncodedDataset validation, CalibrationKind kind) =>
        kind == CalibrationKind.None ? LogitCalibration.Identity : LogitCalibration.Fit(Logits(model, validation), validation.Labels, kind);

    /// <summary>Logits of every row of a loaded model, with its saved calibration applied (what its Predictor serves).</summary>
    public static float[] Logits(LoadedModel loaded, EncodedDataset data, int batchSize = 1024)
    {
        var logits = Logits(loaded.Model, data, batchSize);
        loaded.Calibration?.Apply(logits);
        return logits;
    }

    /// <summary>
    /// Saves from a data-parallel run: rank 0 writes the checkpoint. Call it on every rank: with row-sharded tables the
    /// ranks stream their rows to rank 0 (one ordinary checkpoint holding whole tables); replicated, the other ranks
    /// return at once.
    /// </summary>
    public static void Save(string path, ZooModel model, Preprocessor preprocessor, DataSource source, IReadOnlyDictionary<string, string>? extra, IProcessGroup group,
        LogitCalibration? calibration = null)
    {
        var meta = new Dictionary<string, string>(source.ToMetadata(), StringComparer.Ordinal);
        if (extra is not null) foreach (var (k, v) in extra) meta[k] = v;
        ModelCheckpoint.Save(path, model, preprocessor, meta, group, calibration);
    }

    /// <summary>Loads a checkpoint that must carry its preprocessing (every checkpoint the pipeline writes does).</summary>
    public static LoadedModel Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{Path.GetFileName(path)}: model file not found ({Path.GetFullPath(path)}).", path);
        var loaded = ModelCheckpoint.Load(path);
        if (loaded.Preprocessor is null)
            throw new CheckpointFormatException(path, "the checkpoint has no preprocessing, so raw data files cannot be mapped to its inputs.");
        return loaded;
    }

    /// <summary>
    /// A checkpoint's preprocessing and metadata, from its header alone (no weight is read): what a run needs to
    /// encode its data before it loads the model — under a row-sharded placement, every rank then loads only its rows.
    /// </summary>
    public static (Preprocessor Preprocessor, IReadOnlyDictionary<string, string> Metadata) ReadPreprocessing(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{Path.GetFileName(path)}: model file not found ({Path.GetFullPath(path)}).", path);
        var header = SafeTensorsFile.ReadHeaderOnly(path);
        if (!header.Metadata.TryGetValue(ModelCheckpoint.PreprocessingKey, out var json))
            throw new CheckpointFormatException(path, "the checkpoint has no preprocessing, so raw data files cannot be mapped to its inputs.");
        try { return (Preprocessor.FromJson(json, ModelCheckpoint.PreprocessingKey), header.Metadata); }
        catch (DataFormatException e) { throw new CheckpointFormatException(path, e.Message, e); }
    }

    /// <summary>The data file read the way the model's training data was, encoded with its preprocessing.</summary>
    public static EncodedDataset EncodeFor(LoadedModel model, string dataPath, DataFormat format = DataFormat.Auto, IReadOnlyList<IndexRange>? ranges = null)
    {
        var source = DataSource.FromMetadata(dataPath, model.Metadata, model.Preprocessor!.Schema, format, ranges);
        return Encode(source, model.Preprocessor);
    }

    /// <summary>Logits of every row (no tape, evaluation mode).</summary>
    public static float[] Logits(CtrModel model, EncodedDataset data, int batchSize = 1024) => Trainer.Evaluate(model, data, batchSize).Logits;

    /// <summary>
    /// Inference latency per example: <paramref name="batchSize"/> rows of <paramref name="data"/> (cycled) are scored
    /// the way the model would be served — a <see cref="ZooModel"/> whose fields the compiled
    /// <see cref="KdEngine.Serving.Predictor"/> takes (single-valued, unscaled) through
    /// <see cref="PredictorLatencyMicroseconds"/>, any other model through no-grad forwards. After
    /// <paramref name="warmup"/> untimed calls, a Stopwatch times calls until at least <paramref name="minExamples"/>
    /// examples and <paramref name="minSeconds"/> have passed. Returns microseconds per example.
    /// </summary>
    public static double LatencyMicroseconds(CtrModel model, EncodedDataset data, int batchSize, int warmup = 20, long minExamples = 20_000, double minSeconds = 0.5)
    {
        // A model the compiled predictor takes is timed the way it is served: no tape, no allocation.
        if (model is ZooModel zoo && !zoo.Fields.Any(f => f.IsMultiValued || f.ScaleByValue))
            return PredictorLatencyMicroseconds(new KdEngine.Serving.Predictor(zoo), data, batchSize, warmup, minExamples, minSeconds);
        if (data.Count == 0) throw new ArgumentException("latency: no rows to run.");
        int f = data.FieldCount;
        var ids = new int[batchSize * f];
        for (int i = 0; i < batchSize; i++) data.RowIds(i % data.Count).CopyTo(ids.AsSpan(i * f, f));
        var batch = new CtrBatch(batchSize, f, ids, ReadOnlyMemory<float>.Empty);
        bool was = model.Training;
        model.Training = false;
        try
        {
            using var tape = Tape<float>.NoGrad();
            for (int i = 0; i < warmup; i++) { tape.Reset(); model.Forward(batch); }
            long examples = 0;
            var sw = Stopwatch.StartNew();
            while (examples < minExamples || sw.Elapsed.TotalSeconds < minSeconds)
            {
                tape.Reset();
                model.Forward(batch);
                examples += batchSize;
            }
            sw.Stop();
            return sw.Elapsed.TotalMicroseconds / examples;
        }
        finally
        {
            model.Training = was;
        }
    }

    /// <summary>Microseconds per example of <see cref="KdEngine.Serving.Predictor.Predict"/> at a batch size (after warm-up).</summary>
    public static double PredictorLatencyMicroseconds(KdEngine.Serving.Predictor predictor, EncodedDataset data, int batchSize,
        int warmup = 20, long minExamples = 20_000, double minSeconds = 0.5)
    {
        if (data.Count == 0) throw new ArgumentException("latency: no rows to run.");
        int f = data.FieldCount;
        var ids = new int[batchSize * f];
        for (int i = 0; i < batchSize; i++) data.RowIds(i % data.Count).CopyTo(ids.AsSpan(i * f, f));
        var scores = new float[batchSize];
        for (int i = 0; i < warmup; i++) predictor.Predict(ids, scores);
        long examples = 0;
        var sw = Stopwatch.StartNew();
        while (examples < minExamples || sw.Elapsed.TotalSeconds < minSeconds)
        {
            predictor.Predict(ids, scores);
            examples += batchSize;
        }
        return sw.Elapsed.TotalMicroseconds / examples;
    }
}
