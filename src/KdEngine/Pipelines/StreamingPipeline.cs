using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using KdEngine.Data;
using KdEngine.Metrics;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Training;
using KdEngine.Serving;

namespace KdEngine.Pipelines;

/// <summary>How the streaming pipeline reads, shuffles and caches.</summary>
public sealed record StreamingOptions
{
    /// <summary>Rows held by the training shuffle buffer (default 1,000,000; 0 or 1 = input order).</summary>
    public int ShuffleBuffer { get; init; } = 1_000_000;

    /// <summary>Parsing threads (default: one per core).</summary>
    public int Workers { get; init; } = Environment.ProcessorCount;

    /// <summary>Unit size for plain files: what is shuffled between epochs (default 64 MiB).</summary>
    public long UnitBytes { get; init; } = InputSet.DefaultUnitBytes;

    /// <summary>Bytes of lines per parsing chunk (default 1 MiB).</summary>
    public int ChunkBytes { get; init; } = LineChunkReader.DefaultChunkBytes;

    /// <summary>Folder of encoded caches (null: no cache; text is parsed on every pass).</summary>
    public string? CacheDirectory { get; init; }

    /// <summary>Folder of temporary files (teacher scores, fingerprint labels); null: <see cref="CacheDirectory"/>, else the system's temporary folder.</summary>
    public string? TemporaryDirectory { get; init; }

    /// <summary>Validation and test parts up to this many source bytes are encoded into memory once; larger ones stream on each pass.</summary>
    public long InMemoryBytes { get; init; } = 256L << 20;

    /// <summary>Bad-row policy and line-length limit.</summary>
    public ReaderOptions Reader { get; init; } = ReaderOptions.Default;

    /// <summary>Where progress lines go (null: silent).</summary>
    public TextWriter? Progress { get; init; }

    /// <summary>Whether <see cref="Progress"/> is a terminal (one redrawn line instead of a plain line every 5 s).</summary>
    public bool Interactive { get; init; }

    /// <summary>The options of one pass over an input (threads, bad rows, progress under <paramref name="label"/>).</summary>
    public PassOptions Pass(string label) => new()
    {
        Workers = Math.Max(1, Workers),
        ChunkBytes = ChunkBytes,
        Reader = Reader,
        Progress = Progress,
        Interactive = Interactive,
        Label = label,
    };

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first option out of range.</summary>
    public void Validate()
    {
        if (ShuffleBuffer < 0) throw new ArgumentOutOfRangeException(nameof(ShuffleBuffer), ShuffleBuffer, "the shuffle buffer must be ≥ 0 rows.");
        if (Workers < 1) throw new ArgumentOutOfRangeException(nameof(Workers), Workers, "at least one parsing thread.");
        if (UnitBytes < 1) throw new ArgumentOutOfRangeException(nameof(UnitBytes), UnitBytes, "units must be ≥ 1 byte.");
        if (ChunkBytes < 64) throw new ArgumentOutOfRangeException(nameof(ChunkBytes), ChunkBytes, "chunks must be ≥ 64 bytes.");
    }
}

/// <summary>
/// One part of the data (train, validation or test) ready to stream: its input set, the preprocessing, and where its
/// encoded rows come from — an encoded cache (memory-mapped), rows held in memory (small parts), or the text itself,
/// parsed again on each pass.
/// </summary>
public sealed class StreamedPart : IDisposable
{
    private readonly StreamingOptions _options;
    private EncodedCache? _cache;
    private EncodedDataset? _memory;
    private TeacherScoreTable? _teachers;
    private long _teacherRowOffset;

    internal StreamedPart(string name, InputSet input, Preprocessor preprocessor, StreamingOptions options)
    {
        Name = name;
        Input = input;
        Preprocessor = preprocessor;
        _options = options;
    }

    /// <summary>The part's name (train, validation, test).</summary>
    public string Name { get; }

    /// <summary>The part's input (files, units, row windows).</summary>
    public InputSet Input { get; }

    /// <summary>The preprocessing the part is encoded with.</summary>
    public Preprocessor Preprocessor { get; }

    /// <summary>Where the rows come from: "cache FILE", "memory" or "text".</summary>
    public string Origin => _cache is not null ? $"cache {Path.GetFileName(_cache.Path)}" : _memory is not null ? "memory" : "text";

    /// <summary>Rows, once known (a pass in file order, the cache, or memory); −1 before.</summary>
    public long Rows => _cache?.Rows ?? _memory?.Count ?? Input.Rows ?? -1;

    /// <summary>The part in memory, when it was small enough to keep there.</summary>
    public EncodedDataset? InMemory => _memory;

    internal void UseCache(EncodedCache cache)
    {
        _cache = cache;
        Input.LearnRows(cache.UnitRows);
    }

    internal void UseMemory(EncodedDataset data) => _memory = data;

    /// <summary>K: the external teacher-logit columns every batch of the part carries (0: none).</summary>
    public int TeacherCount => _teachers?.Count ?? 0;

    /// <summary>
    /// Makes every batch of the part carry its rows' external teacher logits: part row i is row
    /// <paramref name="rowOffset"/> + i of <paramref name="scores"/>. A part held in memory gets them as a column of its
    /// dataset (its rows are in memory anyway); a streamed part looks them up per emitted batch.
    /// </summary>
    internal void UseTeacherScores(TeacherScoreTable scores, long rowOffset)
    {
        if (_memory is not null)
        {
            int k = scores.Count;
            var logits = new float[(long)_memory.Count * k];
            for (int i = 0; i < _memory.Count; i++) scores.Read(rowOffset + i, logits.AsSpan(i * k, k));
            _memory = _memory.WithTeacherLogits(logits, k);
        }
        _teachers = scores;
        _teacherRowOffset = rowOffset;
    }

    /// <summary>The mean label from the cache or memory (no text pass), or null.</summary>
    internal double? LabelMean()
    {
        if (_memory is not null) return _memory.LabelRate;
        if (_cache is null) return null;
        double sum = 0;
        long n = 0;
        foreach (var block in _cache.Blocks())
            for (int i = 0; i < block.Count; i++) { sum += block.Label(i); n++; }
        return n == 0 ? null : sum / n;
    }

    /// <summary>The encoded rows in <paramref name="unitOrder"/> (null: file order).</summary>
    public IEnumerable<IRowBlock> Blocks(int[]? unitOrder = null)
    {
        if (_memory is not null) return [new DatasetBlock(_memory)];
        if (_cache is not null) return _cache.Blocks(unitOrder);
        return DataPasses.Encode(Input, Preprocessor, unitOrder, _options.Pass($"read {Name} {Input.Name}") with { Progress = unitOrder is null ? _options.Progress : null });
    }

    /// <summary>
    /// One epoch's training batches: the units in a seeded random order (when the part has more rows than the shuffle
    /// buffer), then the shuffle buffer (<see cref="Streaming.Batches(IEnumerable{IRowBlock}, FeatureSpace, int, int, int, bool)"/>).
    /// With a buffer that holds every row the batches equal <see cref="EncodedDataset.Batches"/>' with the same seed.
    /// </summary>
    public IEnumerable<Batch> TrainingBatches(int batchSize, bool shuffle, int seed, int shuffleBuffer)
    {
        int[]? order = null;
        if (shuffle && _memory is null && Rows > shuffleBuffer && Input.Units.Count > 1 && (Input.Rows is not null || _cache is not null))
        {
            order = new int[Input.Units.Count];
            for (int i = 0; i < order.Length; i++) order[i] = i;
            new DataRandom(seed ^ 0x0B10C5).Shuffle(order);
        }
        if (_memory is not null && shuffleBuffer >= _memory.Count) return _memory.Batches(batchSize, shuffle, seed);
        return Batches(Blocks(order), batchSize, shuffle ? shuffleBuffer : 0, seed, Math.Max(0, Rows));
    }

    /// <summary>Batches of the part in file order (evaluation, prediction).</summary>
    public IEnumerable<Batch> OrderedBatches(int batchSize) =>
        _memory is not null ? _memory.Batches(batchSize) : Batches(Blocks(), batchSize, 0, 0, 0);

    private IEnumerable<Batch> Batches(IEnumerable<IRowBlock> blocks, int batchSize, int shuffleBuffer, int seed, long expectedRows) =>
        _teachers is null
            ? Streaming.Batches(blocks, Preprocessor.FeatureSpace, batchSize, shuffleBuffer, seed, dropLast: false, expectedRows)
            : Streaming.Batches(blocks, Preprocessor.FeatureSpace, batchSize, shuffleBuffer, seed, dropLast: false, expectedRows, _teachers, _teacherRowOffset);

    /// <summary>Closes the part's cache, if any.</summary>
    public void Dispose()
    {
        _cache?.Dispose();
        _cache = null;
    }

    /// <summary>An in-memory dataset seen as one block.</summary>
    private sealed class DatasetBlock(EncodedDataset data) : IRowBlock
    {
        public int Count => data.Count;
        public long FirstRow => 0;
        public ReadOnlySpan<int> RowIds(int row) => data.RowIds(row);
        public float Label(int row) => data.Labels[row];
        public ReadOnlySpan<float> RowDense(int row) => data.DenseValues is null ? default : data.DenseValues.AsSpan(row * data.FieldCount, data.FieldCount);
        public int UserId(int row) => data.UserIds is null ? -1 : data.UserIds[row];
        public ReadOnlySpan<int> MultiIds(int field, int row) => data.Multi[field].Row(row);
    }
}

/// <summary>Train, validation and test parts with the preprocessing fitted on the train part, ready to stream.</summary>
public sealed class StreamedData : IDisposable
{
    internal StreamedData(DataSource source, Preprocessor preprocessor, StreamedPart train, StreamedPart validation, StreamedPart? test,
        IReadOnlyList<PassReport> passes, double? trainClickRate, bool splitOfOneFile)
    {
        SplitOfOneFile = splitOfOneFile;
        TrainClickRate = trainClickRate;
        Source = source;
        Preprocessor = preprocessor;
        Fields = CtrPipeline.InputFields(preprocessor.FeatureSpace);
        Train = train;
        Validation = validation;
        Test = test;
        Passes = passes;
    }

    /// <summary>How the data was read (format, ranges: saved with a model).</summary>
    public DataSource Source { get; }

    /// <summary>The preprocessing fitted on the train part (or read from its cache, or given).</summary>
    public Preprocessor Preprocessor { get; }

    /// <summary>The model-input fields (from the preprocessing's feature space).</summary>
    public IReadOnlyList<InputField> Fields { get; }

    /// <summary>Whether input field i is declared privileged in the schema (teacher-only).</summary>
    public IReadOnlyList<bool> Privileged => Preprocessor.FeatureSpace.Fields.Select(f => f.Privileged).ToArray();

    /// <summary>The rows trained on.</summary>
    public StreamedPart Train { get; }

    /// <summary>The rows validated on every epoch.</summary>
    public StreamedPart Validation { get; }

    /// <summary>The rows evaluated once at the end (null: none).</summary>
    public StreamedPart? Test { get; }

    /// <summary>Reports of the passes over text made while preparing (fit, cache writes).</summary>
    public IReadOnlyList<PassReport> Passes { get; }

    /// <summary>The train part's click rate, when a pass or the cache gave it.</summary>
    public double? TrainClickRate { get; }

    /// <summary>Whether the parts are one file cut by a sequential split (train, validation, test tile its rows in order).</summary>
    public bool SplitOfOneFile { get; }

    /// <summary>The external teacher scores every part's batches carry (<see cref="StreamedTeacherScores.Attach"/>), or null.</summary>
    public TeacherScoreTable? TeacherScores { get; private set; }

    internal void UseTeacherScores(TeacherScoreTable scores)
    {
        TeacherScores?.Dispose();
        TeacherScores = scores;
    }

    /// <summary>Closes the parts' caches and the teacher scores' mapped files.</summary>
    public void Dispose()
    {
        Train.Dispose();
        Validation.Dispose();
        Test?.Dispose();
        TeacherScores?.Dispose();
        TeacherScores = null;
    }
}

/// <summary>The inputs of a streamed run: separate train/validation/test sources, or one file split by rows.</summary>
public sealed record StreamingInputs
{
    /// <summary>Train, validation and optional test sources (each one or more files or globs).</summary>
    public static StreamingInputs Separate(DataSource train, DataSource validation, DataSource? test) =>
        new() { Train = train, Validation = validation, Test = test };

    /// <summary>
    /// One file cut by row count (e.g. 8:1:1), never loaded: sequentially, or by a seeded hash of each row's ordinal
    /// (<see cref="SplitMode.Hash"/>). A random permutation needs every row in memory and is refused here.
    /// </summary>
    public static StreamingInputs SplitOf(DataSource file, IReadOnlyList<double> ratios, SplitMode mode = SplitMode.Sequential, int seed = 0) =>
        mode == SplitMode.Random
            ? throw new ArgumentException("a random split permutes every row in memory; stream with a sequential or a hash split (SplitMode.Hash).")
            : new() { Train = file, Ratios = ratios, Mode = mode, Seed = seed };

    /// <summary>The train source (with <see cref="Ratios"/>: the one file that is split).</summary>
    public DataSource Train { get; init; } = null!;
    /// <summary>The validation source (null when <see cref="Ratios"/> split <see cref="Train"/>).</summary>
    public DataSource? Validation { get; init; }
    /// <summary>The test source (optional).</summary>
    public DataSource? Test { get; init; }
    /// <summary>Ratios of a split of <see cref="Train"/> (e.g. 8:1:1), or null for separate sources.</summary>
    public IReadOnlyList<double>? Ratios { get; init; }
    /// <summary>How <see cref="Ratios"/> cut the file: <see cref="SplitMode.Sequential"/> or <see cref="SplitMode.Hash"/>.</summary>
    public SplitMode Mode { get; init; } = SplitMode.Sequential;
    /// <summary>The seed of a hash split.</summary>
    public int Seed { get; init; }
}

/// <summary>
/// The pipeline for data of any size: every pass streams (parsing on all cores), memory is bounded by the model, the
/// vocabularies and the shuffle buffer. Prepare: check every file (e.g. Parquet column types) → fit the preprocessing in
/// one pass over the train part (or reuse it from a fresh encoded cache) → optionally write encoded caches → train with
/// a shuffled unit order and a shuffle buffer → evaluate streaming.
/// </summary>
public static class StreamingPipeline
{
    /// <summary>
    /// Prepares the parts. <paramref name="fitted"/>: encode with this preprocessing (a teacher's) instead of fitting one.
    /// </summary>
    public static StreamedData Prepare(StreamingInputs inputs, PreprocessorOptions? preprocessing, StreamingOptions? options = null, Preprocessor? fitted = null)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        options ??= new StreamingOptions();
        options.Validate();
        preprocessing ??= new PreprocessorOptions();
        var source = inputs.Train;
        if (fitted is not null) source = source with { Format = source.ResolvedFormat, Schema = fitted.Schema };
        InputSet train, valid;
        InputSet? test;
        if (inputs.Ratios is { } ratios)
        {
            var whole = source.OpenInput(options.UnitBytes);
            whole.Check();
            var parts = inputs.Mode == SplitMode.Hash ? whole.SplitHash(ratios, inputs.Seed, options.Reader) : whole.SplitSequential(ratios, options.Reader);
            if (parts.Length < 2) throw new ArgumentException("split: expected train:validation[:test] ratios.");
            train = parts[0];
            valid = parts[1];
            test = parts.Length > 2 ? parts[2] : null;
            string[] names = ["train", "validation", "test"];
            for (int k = 0; k < parts.Length; k++)
                if (parts[k].Units.Count == 0)
                    throw new ArgumentException($"{source.FileName}: the {names[Math.Min(k, 2)]} part of a {string.Join(":", ratios)} split is empty; use more rows.");
        }
        else
        {
            train = source.OpenInput(options.UnitBytes);
            var v = inputs.Validation ?? throw new ArgumentException("streaming: a validation source is needed (--valid), or one file with --split.");
            valid = Aligned(v, source).OpenInput(options.UnitBytes);
            test = inputs.Test is { } t ? Aligned(t, source).OpenInput(options.UnitBytes) : null;
        }
        // Every file is checked before anything is fitted or trained (headers, Parquet column types).
        train.Check();
        valid.Check();
        test?.Check();

        var passes = new List<PassReport>();
        Preprocessor pre;
        double? clickRate = null;
        EncodedCache? trainCache = null;
        string? trainCachePath = options.CacheDirectory is null ? null : CachePath(options.CacheDirectory, "train", train);
        if (fitted is not null) pre = fitted;
        else if (trainCachePath is not null && TryReuseFit(trainCachePath, train, preprocessing, options, out var reused, out trainCache)) pre = reused;
        else
        {
            (pre, clickRate) = FitOnePass(train, preprocessing, options, passes);
            // The count tables (≈ 32 bytes per distinct value per field per parsing thread: 300 MB for 2.6M ids on two
            // threads) are garbage from here on, all at once; an aggressive collection gives their pages back to the
            // system before the model, the shuffle buffer and the in-memory parts are allocated (otherwise the
            // collector keeps most of them committed and the run's peak memory carries them). One collection per run.
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        }
        if (source.Schema is null) source = source with { Format = source.ResolvedFormat, Schema = train.Format.Schema };
        source = source with { Format = source.ResolvedFormat };

        var trainPart = new StreamedPart("train", train, pre, options);
        var validPart = new StreamedPart("validation", valid, pre, options);
        var testPart = test is null ? null : new StreamedPart("test", test, pre, options);
        try
        {
            if (trainCache is not null) trainPart.UseCache(trainCache);
            else if (trainCachePath is not null) trainPart.UseCache(OpenOrBuild(trainCachePath, trainPart, options, fitted is null ? preprocessing : null, passes));
            foreach (var part in new[] { validPart, testPart })
            {
                if (part is null) continue;
                if (options.CacheDirectory is not null) part.UseCache(OpenOrBuild(CachePath(options.CacheDirectory, part.Name, part.Input), part, options, null, passes));
                else if (part.Input.SourceBytes <= options.InMemoryBytes)
                {
                    // A small part is encoded once into memory (validation runs every epoch).
                    var builder = new EncodedDatasetBuilder(pre.FeatureSpace);
                    PassReport? r = null;
                    foreach (var block in DataPasses.Encode(part.Input, pre, null, options.Pass($"read {part.Name} {part.Input.Name}"), rep => r = rep))
                        builder.AddRange(block, 0, block.Count);
                    passes.Add(r!);
                    part.UseMemory(builder.Build());
                }
            }
            foreach (var p in new[] { trainPart, validPart, testPart })
                if (p is not null && p.Rows == 0) throw new ArgumentException($"{p.Input.Name}: the {p.Name} part has no rows.");
        }
        catch
        {
            trainPart.Dispose();
            validPart.Dispose();
            testPart?.Dispose();
            throw;
        }
        clickRate ??= trainPart.LabelMean();
        return new StreamedData(source, pre, trainPart, validPart, testPart, passes, clickRate, inputs.Ratios is not null && inputs.Mode == SplitMode.Sequential);
    }

    /// <summary>The fit pass: counts, then vocabularies; the counts are unreachable once it returns.</summary>
    private static (Preprocessor Fitted, double? ClickRate) FitOnePass(InputSet train, PreprocessorOptions preprocessing, StreamingOptions options, List<PassReport> passes)
    {
        var counts = DataPasses.Count(train, preprocessing, options.Pass($"fit {train.Name}"), out var report);
        passes.Add(report);
        return (Preprocessor.Fit(counts), counts.Rows > 0 ? (double)counts.Positives / counts.Rows : null);
    }

    /// <summary>A validation/test source read like the train source (format, schema, ranges) unless it says otherwise.</summary>
    private static DataSource Aligned(DataSource part, DataSource train) => part with
    {
        Format = part.Format == DataFormat.Auto ? train.Format : part.Format,
        Schema = part.Schema ?? train.Schema,
        Ranges = part.Ranges ?? train.Ranges,
    };

    /// <summary>
    /// The cache file of a part: named by the part, the first file and a hash of the files' full paths, so a changed file
    /// (or another split) finds its old cache, which <see cref="EncodedCache.CheckFresh"/> then rejects and it is rebuilt.
    /// </summary>
    public static string CachePath(string directory, string part, InputSet input)
    {
        var identity = string.Join("\n", input.Files.Select(Path.GetFullPath)) + "\n" + input.UnitBytes.ToString(CultureInfo.InvariantCulture);
        // A hash split's parts read the same units; the split (ratios, seed, part) tells their caches apart.
        if (input.Units.Count > 0 && input.Units[0].Filter is { } filter) identity += "\n" + filter;
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(identity)))[..12];
        return Path.Combine(directory, $"{part}.{Path.GetFileName(input.Files[0])}.{hash}{EncodedCache.Extension}");
    }

    /// <summary>A fresh train cache fitted with the same options gives back its preprocessing: no pass over the text at all.</summary>
    private static bool TryReuseFit(string path, InputSet train, PreprocessorOptions options, StreamingOptions streaming, out Preprocessor pre, out EncodedCache? cache)
    {
        pre = null!;
        cache = null;
        if (!File.Exists(path)) return false;
        EncodedCache? opened = null;
        try
        {
            // The feature space is not known before the preprocessing: read it from the cache, then open for it.
            var probe = ProbePreprocessing(path);
            if (probe is null) return false;
            var (json, fitOptions) = probe.Value;
            if (fitOptions != options) { streaming.Progress?.WriteLine($"cache {Path.GetFileName(path)} was fitted with other options; fitting again."); return false; }
            var candidate = Preprocessor.FromJson(json, Path.GetFileName(path));
            opened = EncodedCache.Open(path, candidate.FeatureSpace);
            opened.CheckFresh(train, json);
            pre = candidate;
            cache = opened;
            streaming.Progress?.WriteLine($"cache {Path.GetFileName(path)}: {opened.Rows:N0} encoded rows and their preprocessing reused (no text parsed)");
            return true;
        }
        catch (Exception e) when (e is StaleCacheException or DataFormatException or IOException)
        {
            opened?.Dispose();
            streaming.Progress?.WriteLine($"{e.Message} Rebuilding it.");
            return false;
        }
    }

    private static (string Json, PreprocessorOptions Options)? ProbePreprocessing(string path)
    {
        var (json, fitOptions) = EncodedCache.StoredPreprocessing(path);
        return json is null || fitOptions is null ? null : (json, fitOptions);
    }

    private static EncodedCache OpenOrBuild(string path, StreamedPart part, StreamingOptions options, PreprocessorOptions? fitOptions, List<PassReport> passes)
    {
        string json = part.Preprocessor.ToJson();
        if (File.Exists(path))
        {
            EncodedCache? cache = null;
            try
            {
                cache = EncodedCache.Open(path, part.Preprocessor.FeatureSpace);
                cache.CheckFresh(part.Input, json);
                options.Progress?.WriteLine($"cache {Path.GetFileName(path)}: {cache.Rows:N0} encoded rows of {part.Name}");
                return cache;
            }
            catch (StaleCacheException e)
            {
                cache?.Dispose();
                options.Progress?.WriteLine($"{e.Message} Rebuilding it.");
            }
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        PassReport? report = null;
        var blocks = DataPasses.Encode(part.Input, part.Preprocessor, null, options.Pass($"cache {part.Name} {part.Input.Name}"), r => report = r);
        EncodedCache.Write(path, part.Input, part.Preprocessor, blocks, fitOptions);
        passes.Add(report!);
        var written = EncodedCache.Open(path, part.Preprocessor.FeatureSpace);
        written.CheckFresh(part.Input, json);
        options.Progress?.WriteLine($"wrote cache {path} ({written.Rows:N0} rows, {ReadProgress.Megabytes(new FileInfo(path).Length)})");
        return written;
    }

    /// <summary>
    /// Trains an objective on the streamed train part (a new unit order and shuffle seed per epoch, validation on the
    /// validation part every epoch), then evaluates the predictor on validation and test.
    /// </summary>
    public static TrainOutcome Fit(IObjective objective, StreamedData data, TrainingSettings settings, int shuffleBuffer,
        TextWriter? progress = null, bool interactive = false)
    {
        settings.Validate();
        var optimizer = settings.BuildOptimizer(objective.Trainable.Parameters().Select(p => p.Tensor));
        long rows = data.Train.Rows;
        long steps = rows > 0 ? (rows + settings.BatchSize - 1) / settings.BatchSize : 0;
        var report = WideFirst.Fit(objective, optimizer, settings, settings.ToTrainerOptions(),
            (options, stageObjective, stageOptimizer) => new Trainer(options, progress, interactive).FitStream(stageObjective, stageOptimizer,
                epoch => data.Train.TrainingBatches(settings.BatchSize, settings.Shuffle, settings.Seed + epoch, shuffleBuffer),
                batchSize => data.Validation.OrderedBatches(batchSize), steps),
            progress);
        var valid = Trainer.Evaluate(objective.Predictor, data.Validation.OrderedBatches(1024)).Result;
        var test = data.Test is null ? valid : Trainer.Evaluate(objective.Predictor, data.Test.OrderedBatches(1024)).Result;
        return new TrainOutcome(report, valid, test);
    }

    /// <summary>Supervised training of <paramref name="model"/>; see <see cref="Fit"/>.</summary>
    public static TrainOutcome Train(ZooModel model, StreamedData data, TrainingSettings settings, int shuffleBuffer, TextWriter? progress = null, bool interactive = false) =>
        Fit(new SupervisedObjective(model), data, settings, shuffleBuffer, progress, interactive);

    /// <summary>
    /// Scores every row of <paramref name="input"/> in file order with <paramref name="model"/>, streaming: each batch's
    /// logits go to <paramref name="onBatch"/> (with the batch, for labels) as they are computed. Returns the rows scored.
    /// With <paramref name="predictor"/> (compiled from <paramref name="model"/>) each batch's ids [B, C] go through it
    /// instead of the training forward (the predictor applies its own calibration); otherwise <paramref name="calibration"/>
    /// (a checkpoint's post-hoc map, when fitted) is applied to the forward's logits.
    /// </summary>
    public static long Score(CtrModel model, InputSet input, Preprocessor preprocessor, Action<ReadOnlySpan<float>, Batch> onBatch,
        StreamingOptions? options = null, int batchSize = 1024, Predictor? predictor = null, LogitCalibration? calibration = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(onBatch);
        options ??= new StreamingOptions();
        input.Check();
        bool was = model.Training;
        model.Training = false;
        long rows = 0;
        var scratch = new BatchScratch();
        float[] buffer = new float[batchSize];
        try
        {
            using var tape = KdEngine.Autograd.Tape<float>.NoGrad();
            var blocks = DataPasses.Encode(input, preprocessor, null, options.Pass($"score {input.Name}"));
            foreach (var batch in Streaming.Batches(blocks, preprocessor.FeatureSpace, batchSize, 0))
            {
                if (predictor is not null) predictor.Predict(batch.Ids, buffer.AsSpan(0, batch.Size));
                else
                {
                    tape.Reset();
                    var z = model.Forward(scratch.From(batch)).Logits;
                    z.Backend.Download(z.Storage, buffer.AsSpan(0, batch.Size));
                    calibration?.Apply(buffer.AsSpan(0, batch.Size));
                }
                onBatch(buffer.AsSpan(0, batch.Size), batch);
                rows += batch.Size;
            }
        }
        finally { model.Training = was; }
        return rows;
    }

    /// <summary>AUC, logloss and calibration of <paramref name="model"/> over every row of the input, streamed (8 bytes kept per row).</summary>
    public static (EvaluationResult Result, long Rows) Evaluate(CtrModel model, InputSet input, Preprocessor preprocessor, StreamingOptions? options = null,
        LogitCalibration? calibration = null, Action<float[], float[]>? onLogits = null)
    {
        var logits = new List<float>();
        var labels = new List<float>();
        long rows = Score(model, input, preprocessor, (z, batch) =>
        {
            foreach (var v in z) logits.Add(v);
            foreach (var l in batch.Labels) labels.Add(l);
        }, options, calibration: calibration);
        if (rows == 0) throw new ArgumentException($"{input.Name}: no rows to evaluate.");
        float[] logitArray = logits.ToArray(), labelArray = labels.ToArray();
        onLogits?.Invoke(logitArray, labelArray);
        return (CtrMetrics.EvaluateLogits(logitArray, labelArray), rows);
    }

    /// <summary>
    /// Writes one probability per row (header <c>probability</c>), streaming, to a temporary file renamed at the end. A
    /// probability is σ(z) computed in double and rounded once to float (what the service returns), written in the
    /// shortest text that parses back to it. With <paramref name="predictor"/> the logits are the compiled
    /// <see cref="Predictor"/>'s over batches of <paramref name="batchSize"/> rows in file order (the service's path).
    /// </summary>
    public static long Predict(CtrModel model, InputSet input, Preprocessor preprocessor, string output, StreamingOptions? options = null,
        Predictor? predictor = null, int batchSize = 1024, LogitCalibration? calibration = null)
    {
        var tmp = output + ".tmp";
        long rows;
        try
        {
            using (var w = new StreamWriter(tmp, false, new UTF8Encoding(false), 1 << 16))
            {
                w.Write("probability\n");
                rows = Score(model, input, preprocessor, (z, _) =>
                {
                    foreach (var v in z) { w.Write(((float)(1.0 / (1.0 + Math.Exp(-(double)v)))).ToString("R", CultureInfo.InvariantCulture)); w.Write('\n'); }
                }, options, batchSize, predictor, calibration);
            }
            File.Move(tmp, output, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
        return rows;
    }
}
