using KdEngine.Autograd;
using KdEngine.Metrics;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Training;

namespace KdEngine.Pipelines;

/// <summary>
/// Streamed parts as <see cref="ITuneData"/>: every trial trains as <c>kdengine train</c> does on data of any size (the
/// train part read once per epoch through a seeded shuffle buffer, validation streamed in order), so a search needs
/// no more memory than one trial. With a shuffle buffer that holds the whole train part a trial trains exactly as on
/// the same parts in memory (<see cref="EncodedTuneData"/>): the same batches, the same model. With an encoded cache
/// (<see cref="StreamingOptions.CacheDirectory"/>) trials after the first read no text.
/// </summary>
public sealed class StreamedTuneData : ITuneData
{
    private readonly StreamedData _data;
    private readonly int _shuffleBuffer;
    private readonly StreamedPart _test;

    /// <summary>Wraps prepared streamed parts; the test part must exist (the final report reads it once).</summary>
    public StreamedTuneData(StreamedData data, int shuffleBuffer)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (shuffleBuffer < 1) throw new ConfigException($"tune: shuffle buffer = {shuffleBuffer}; expected ≥ 1 row.");
        _data = data;
        _shuffleBuffer = shuffleBuffer;
        _test = data.Test ?? throw new ConfigException("tune: the data has no test part, and the final report reads it once; give a test part (--test, or a split with a test share).");
    }

    /// <inheritdoc/>
    public IReadOnlyList<InputField> Fields => _data.Fields;
    /// <inheritdoc/>
    public IReadOnlyList<bool> Privileged => _data.Privileged;
    /// <inheritdoc/>
    public long TrainRows => _data.Train.Rows;
    /// <inheritdoc/>
    public long ValidationRows => _data.Validation.Rows;

    /// <inheritdoc/>
    public TrainingReport Fit(TrainingSettings settings, IObjective objective, IOptimizer optimizer)
    {
        ArgumentNullException.ThrowIfNull(settings);
        long rows = _data.Train.Rows;
        long steps = rows > 0 ? (rows + settings.BatchSize - 1) / settings.BatchSize : 0;
        // As StreamingPipeline.Fit: epoch e reads the units and the buffer with seed + e, which is the in-memory shuffle's seed.
        return WideFirst.Fit(objective, optimizer, settings, settings.ToTrainerOptions(),
            (options, stageObjective, stageOptimizer) => new Trainer(options).FitStream(stageObjective, stageOptimizer,
                epoch => _data.Train.TrainingBatches(settings.BatchSize, settings.Shuffle, settings.Seed + epoch, _shuffleBuffer),
                batchSize => _data.Validation.OrderedBatches(batchSize), steps), cache: WideStages);
    }

    /// <summary>First stages of wide-first trials, reused across trials that share them (see <see cref="WideStageCache"/>); null trains every stage.</summary>
    public WideStageCache? WideStages { get; init; } = new();

    /// <inheritdoc/>
    public (EvaluationResult Result, float[] Logits, float[] Labels) ScoreValidation(CtrModel model) =>
        Trainer.Evaluate(model, _data.Validation.OrderedBatches(EvaluationBatch));

    /// <inheritdoc/>
    public IReadOnlyList<(float[] Logits, float[] Labels)> ScoreTest(IReadOnlyList<CtrModel> models)
    {
        ArgumentNullException.ThrowIfNull(models);
        // One pass over the test part scores every model (each keeps a logit per row, 4 bytes; the labels are shared).
        var logits = models.Select(_ => new List<float>()).ToArray();
        var labels = new List<float>();
        var was = models.Select(m => m.Training).ToArray();
        foreach (var m in models) m.Training = false;
        var scratch = new BatchScratch();
        float[] buffer = new float[EvaluationBatch];
        try
        {
            using var tape = Tape<float>.NoGrad();
            foreach (var batch in _test.OrderedBatches(EvaluationBatch))
            {
                var input = scratch.From(batch);
                for (int k = 0; k < models.Count; k++)
                {
                    tape.Reset();
                    var z = models[k].Forward(input).Logits;
                    z.Backend.Download(z.Storage, buffer.AsSpan(0, batch.Size));
                    for (int i = 0; i < batch.Size; i++) logits[k].Add(buffer[i]);
                }
                foreach (var label in batch.Labels) labels.Add(label);
            }
        }
        finally
        {
            for (int k = 0; k < models.Count; k++) models[k].Training = was[k];
        }
        if (labels.Count == 0) throw new ConfigException("tune: the test part has no rows.");
        var labelArray = labels.ToArray();
        return logits.Select(l => (l.ToArray(), labelArray)).ToList();
    }

    /// <summary>Rows per scoring batch: the in-memory evaluation's, so both score each row with the same kernels.</summary>
    private const int EvaluationBatch = 1024;
}
