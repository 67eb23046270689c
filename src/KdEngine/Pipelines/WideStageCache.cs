using System.Runtime.InteropServices;
using System.Security.Cryptography;
using KdEngine.Models;
using KdEngine.Training;

namespace KdEngine.Pipelines;

/// <summary>
/// First stages of <see cref="WideFirst"/> kept for reuse over one data set: a search (<see cref="Tuner"/>) trains the same
/// logistic regression in every trial whose settings differ only where that regression does not look — the deep part's
/// learning rate, weight decay, dropout, widths — so the stage is trained once and each later trial starts from the very
/// same fitted weights and optimizer state, bit for bit.
/// </summary>
/// <remarks>
/// A stage is the same when everything it reads is: the regression's parameter names, shapes and initial values (their
/// SHA-256), the trainer options of the stage, and the settings its optimizer is built from. With FTRL
/// (the wide parts' default) that is α, β, λ1, λ2, the regularisation mode, the table update and the clip norm — FTRL
/// reads no learning rate, L2 or weight decay of the other optimizers — so those are left out of the key; with any other
/// optimizer every setting is in the key. The training data are the cache owner's (one cache per data set). Holds at most
/// <see cref="Capacity"/> stages (the oldest goes first; a seed's stage is a new one), each the regression's weights and its
/// optimizer's state — for FTRL three floats per id, against the D or more of the model's embedding.
/// </remarks>
public sealed class WideStageCache(int capacity = 2)
{
    private sealed record Entry(string Key, float[][] Fitted, IReadOnlyList<(string Name, float[] Data, int[] Shape)> State, TrainingReport Report);

    private readonly LinkedList<Entry> _entries = new();
    private readonly Lock _lock = new();

    /// <summary>Stages kept at most.</summary>
    public int Capacity { get; } = capacity >= 1 ? capacity : throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "wide-stage cache: capacity must be ≥ 1.");
    /// <summary>Stages reused so far.</summary>
    public int Hits { get; private set; }

    /// <summary>The key of a stage: its parameters (names, shapes, initial values), its settings as the optimizer reads them and its trainer options.</summary>
    internal static string KeyOf(TrainingSettings wideSettings, TrainerOptions wideOptions, ZooModel linear)
    {
        var kind = wideSettings.WideOptimizer ?? wideSettings.Optimizer;
        var read = kind != OptimizerKind.Ftrl ? wideSettings : new TrainingSettings
        {
            // FTRL over every parameter of the regression: what TrainingSettings.BuildOptimizer gives it (either path).
            Optimizer = OptimizerKind.Ftrl,
            FtrlAlpha = wideSettings.FtrlAlpha, FtrlBeta = wideSettings.FtrlBeta, FtrlL1 = wideSettings.FtrlL1, FtrlL2 = wideSettings.FtrlL2,
            FtrlRegularization = wideSettings.FtrlRegularization, TableUpdate = wideSettings.TableUpdate, ClipNorm = wideSettings.ClipNorm,
        };
        var parameters = linear.Parameters();
        var shapes = string.Join(";", parameters.Select(p => $"{p.Name}[{string.Join(",", p.Tensor.Shape.Dims.ToArray())}]"));
        using var initial = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var values in Raw(linear)) initial.AppendData(MemoryMarshal.AsBytes(values.AsSpan()));
        // Record ToString lists every option (a new one joins the key by itself); the stage runs without callbacks or checkpoints.
        return $"{shapes}|{Convert.ToHexString(initial.GetHashAndReset())}|{read.ToJson()}|{wideOptions}";
    }

    /// <summary>The raw parameter values of a model (pending deferred rows stay pending, as the optimizer state expects).</summary>
    internal static float[][] Raw(ZooModel model) => model.Parameters().Select(p =>
    {
        var values = new float[p.Tensor.Length];
        p.Tensor.Backend.Download(p.Tensor.Storage, values);
        return values;
    }).ToArray();

    /// <summary>
    /// Puts a kept stage into <paramref name="linear"/> and <paramref name="optimizer"/> (built as the stage would build them)
    /// when one matches; returns its report (with zero elapsed time: nothing was trained), or null.
    /// </summary>
    internal TrainingReport? TryRestore(string key, ZooModel linear, IOptimizer optimizer)
    {
        Entry? hit;
        lock (_lock)
        {
            hit = _entries.FirstOrDefault(e => e.Key == key);
            if (hit is null) return null;
            Hits++;
        }
        var parameters = linear.Parameters();
        for (int i = 0; i < parameters.Count; i++) parameters[i].Tensor.Backend.Upload(hit.Fitted[i], parameters[i].Tensor.Storage);
        optimizer.ReloadDeviceParameters();
        optimizer.ImportState(hit.State);
        return hit.Report with { Elapsed = TimeSpan.Zero };
    }

    /// <summary>Keeps a trained stage (the regression's raw weights and its optimizer's state after training).</summary>
    internal void Store(string key, ZooModel linear, IOptimizer optimizer, TrainingReport report)
    {
        var entry = new Entry(key, Raw(linear), optimizer.ExportState(), report);
        lock (_lock)
        {
            _entries.AddFirst(entry);
            while (_entries.Count > Capacity) _entries.RemoveLast();
        }
    }
}
