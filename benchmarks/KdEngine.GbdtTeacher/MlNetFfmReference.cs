// ML.NET's field-aware factorization machine as a reference, on exactly KdEngine's split and preprocessing: the same
// encoded ids, each field one feature column (an indicator vector), so ML.NET's FFM sees the model KdEngine's `ffm` sees.
// Its hyper-parameters (latent dimension × iterations × learning rate; L2 LambdaLinear = LambdaLatent) are chosen by the
// mean validation AUC over the seeds, and only the chosen one's test part is read, once per seed — the rule
// benchmarks/zoo-grid.sh applies to KdEngine's FFM, so the two rows compare like for like.
using System.Diagnostics;
using System.Globalization;
using KdEngine.Data;
using KdEngine.Metrics;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers;

internal static class MlNetFfmReference
{
    public static void Run(GbdtOptions opt, EncodedDataset[] parts, string[] idFiles, int[] cardinalities)
    {
        var inv = CultureInfo.InvariantCulture;
        int fields = cardinalities.Length;
        Console.WriteLine($"ML.NET FFM reference: latent dim {string.Join(",", opt.FfmDims)} × iterations {string.Join(",", opt.FfmIterations)} × " +
            $"lr {string.Join(",", opt.FfmLearningRates.Select(x => x.ToString(inv)))}; LambdaLinear = LambdaLatent = {opt.FfmLambda.ToString(inv)}; " +
            $"NormalizeFeatures and Shuffle on (ML.NET's defaults); seeds 1..{opt.Seeds}; chosen by mean validation AUC, the test part read for the chosen one only");

        // One MLContext per seed: its seed drives the trainer's latent init and its per-pass shuffle.
        (IDataView Train, IDataView Valid, IDataView Test, string[] Columns) Load(MLContext ml)
        {
            var loader = IdLoader(ml, cardinalities);
            var keys = Enumerable.Range(0, fields).Select(f => $"f{f}").ToArray();
            // Key → indicator vector: field f becomes one feature column of length cardinality[f] with a single 1.
            var featurize = ml.Transforms.Conversion.MapKeyToVector(keys.Select(k => new InputOutputColumnPair(k + ".v", k)).ToArray());
            var raw = idFiles.Select(p => loader.Load(p)).ToArray();
            var featurizer = featurize.Fit(raw[0]);
            var views = raw.Select(v => ml.Data.Cache(featurizer.Transform(v))).ToArray();
            return (views[0], views[1], views[2], keys.Select(k => k + ".v").ToArray());
        }

        // Every row must carry exactly one active feature per field (an id that fell out as "missing" would change ML.NET's
        // per-row normalisation and the model it trains), checked on the train part once.
        {
            var ml = new MLContext(seed: 1);
            var (train, _, _, cols) = Load(ml);
            for (int f = 0; f < fields; f++)
            {
                int row = 0;
                foreach (var v in train.GetColumn<VBuffer<float>>(cols[f]))
                {
                    int active = 0;
                    foreach (float x in v.GetValues()) if (x != 0) active++;
                    if (active != 1) throw new InvalidOperationException($"ML.NET FFM reference: train row {row}, field {f} has {active} active features, expected 1.");
                    row++;
                }
            }
        }

        float[] Logits(ITransformer model, IDataView part)
        {
            var scored = model.Transform(part);
            var z = scored.GetColumn<float>("Score").ToArray();
            var p = scored.GetColumn<float>("Probability").ToArray();
            for (int i = 0; i < z.Length; i++)
                if (Math.Abs(1 / (1 + Math.Exp(-z[i])) - p[i]) > 1e-4)
                    throw new InvalidOperationException($"ML.NET FFM: σ(score) ≠ probability at row {i}; the score is not the logit.");
            return z;
        }

        // How much of ML.NET's score its field-aware (latent) part carries: max over validation rows of |score − linear part|,
        // the linear part recomputed from the trained linear weights and ML.NET's normalised inputs (each of the row's F
        // active features at 1/√F). Zero means the latent part never entered a prediction.
        double LatentShare(ITransformer model, IDataView part, string[] cols)
        {
            var parameters = ((FieldAwareFactorizationMachinePredictionTransformer)model).Model;
            var linear = parameters.GetLinearWeights();
            var score = model.Transform(part).GetColumn<float>("Score").ToArray();
            var response = new double[score.Length];
            int offset = 0;
            foreach (var col in cols)
            {
                int row = 0, length = 0;
                foreach (var v in part.GetColumn<VBuffer<float>>(col))
                {
                    length = v.Length;
                    foreach (var (slot, x) in v.Items()) response[row] += linear[offset + slot] * x / Math.Sqrt(fields);
                    row++;
                }
                offset += length;
            }
            return score.Select((z, i) => Math.Abs(z - response[i])).Max();
        }

        var candidates = (from d in opt.FfmDims from it in opt.FfmIterations from lr in opt.FfmLearningRates select (Dim: d, Iterations: it, Lr: lr)).ToArray();
        var results = new List<(string Name, double MeanValid, double StdValid, ITransformer[] Models, MLContext[] Contexts, IDataView[] Tests)>();
        foreach (var c in candidates)
        {
            var sw = Stopwatch.StartNew();
            var valid = new double[opt.Seeds];
            var models = new ITransformer[opt.Seeds];
            var contexts = new MLContext[opt.Seeds];
            var tests = new IDataView[opt.Seeds];
            double latent = 0;
            for (int s = 0; s < opt.Seeds; s++)
            {
                var ml = new MLContext(seed: s + 1);
                var (train, validPart, test, cols) = Load(ml);
                var trainer = ml.BinaryClassification.Trainers.FieldAwareFactorizationMachine(new FieldAwareFactorizationMachineTrainer.Options
                {
                    FeatureColumnName = cols[0],
                    ExtraFeatureColumns = cols[1..],
                    LatentDimension = c.Dim,
                    NumberOfIterations = c.Iterations,
                    LearningRate = (float)c.Lr,
                    LambdaLinear = (float)opt.FfmLambda,
                    LambdaLatent = (float)opt.FfmLambda,
                    NormalizeFeatures = true,
                    Shuffle = true,
                    Verbose = false,
                });
                models[s] = trainer.Fit(train);
                contexts[s] = ml;
                tests[s] = test;
                valid[s] = CtrMetrics.EvaluateLogits(Logits(models[s], validPart), parts[1].Labels).Auc;
                if (s == 0) latent = LatentShare(models[s], validPart, cols);
            }
            var (m, sd) = MeanStd(valid);
            string name = string.Create(inv, $"D {c.Dim}, {c.Iterations} iterations, lr {c.Lr}");
            results.Add((name, m, sd, models, contexts, tests));
            Console.WriteLine(string.Create(inv, $"  {name}: validation AUC {m:F4} ± {sd:F4} (seeds {string.Join(" ", valid.Select(v => v.ToString("F4", inv)))}; {sw.Elapsed.TotalSeconds:F1} s); " +
                $"latent part's share of the score (seed 1, validation): max |score − linear part| = {latent:G3}"));
        }
        var best = results.OrderByDescending(r => r.MeanValid).First();
        var aucs = new double[opt.Seeds];
        var losses = new double[opt.Seeds];
        for (int s = 0; s < opt.Seeds; s++) // the test part, read once per seed for the chosen candidate only
        {
            var r = CtrMetrics.EvaluateLogits(Logits(best.Models[s], best.Tests[s]), parts[2].Labels);
            aucs[s] = r.Auc;
            losses[s] = r.LogLoss;
        }
        var (ma, sa) = MeanStd(aucs);
        var (ml2, sl) = MeanStd(losses);
        Console.WriteLine(string.Create(inv, $"chosen on validation: {best.Name} (validation AUC {best.MeanValid:F4} ± {best.StdValid:F4}) → " +
            $"test AUC {ma:F4} ± {sa:F4} (seeds {string.Join(" ", aucs.Select(v => v.ToString("F4", inv)))}), logloss {ml2:F4} ± {sl:F4}"));
    }

    /// <summary>ML.NET's reader of the id files Program.cs writes: a boolean label, then field f as key column "f{f}"
    /// (0-based ids, cardinality[f] keys).</summary>
    public static TextLoader IdLoader(MLContext ml, int[] cardinalities)
    {
        var columns = new List<TextLoader.Column> { new("Label", DataKind.Boolean, 0) };
        for (int f = 0; f < cardinalities.Length; f++)
            columns.Add(new TextLoader.Column($"f{f}", DataKind.UInt32, [new TextLoader.Range(f + 1)], new KeyCount((ulong)cardinalities[f])));
        return ml.Data.CreateTextLoader(new TextLoader.Options { HasHeader = true, Separators = ['\t'], Columns = columns.ToArray() });
    }

    private static (double Mean, double Std) MeanStd(IReadOnlyList<double> x)
    {
        double m = x.Average();
        return (m, x.Count < 2 ? 0 : Math.Sqrt(x.Sum(v => (v - m) * (v - m)) / (x.Count - 1)));
    }
}
