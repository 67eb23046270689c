using System.Globalization;
using System.Runtime.Intrinsics;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Serving;
using NUnit.Framework;
using static KdEngine.Tests.Serving.ServingTestModels;

namespace KdEngine.Tests.Serving;

/// <summary>
/// The predictor's logits, bit for bit, against outputs recorded from the predictor before its stages were split into
/// model parts (<c>Fixtures/predictor-recorded.txt</c>, float bits in hex): a refactor of the inference plan must not change
/// a single bit. The recording is of this machine's instruction set (AVX-512); where SIMD widths differ, sums are
/// associated differently and the test is inconclusive rather than wrong.
/// </summary>
public class PredictorRecordedOutputTests
{
    private const string FixtureName = "predictor-recorded.txt";

    /// <summary>The recorded models: every zoo kind at the serving-test config, a wide-D CIN without split-half, and a
    /// student reading a subset of the columns.</summary>
    private static IEnumerable<(string Name, ZooModel Model, InputField[] InputFields)> Cases()
    {
        var fields = Fields(6);
        ModelKind[] recorded = [ModelKind.Lr, ModelKind.Fm, ModelKind.Dnn, ModelKind.Wdl, ModelKind.DeepFm, ModelKind.Dcn, ModelKind.XDeepFm];
        foreach (var kind in recorded)
            yield return (kind.ToString(), WithoutLaterTensors(Random(Config(kind), fields, seed: 3)), fields);
        var wide = new ModelConfig
        {
            Model = ModelKind.XDeepFm, EmbeddingDim = 16, Dnn = [12, 7], Cin = [10, 10, 10], CinSplitHalf = false,
            CinActivation = Activation.Relu, Seed = 4,
        };
        yield return ("XDeepFm-D16", Random(wide, fields, seed: 5, scale: 0.3f), fields);
        int[] columns = [0, 2, 3, 5];
        yield return ("Wdl-subset", Random(Config(ModelKind.Wdl), columns.Select(c => fields[c]).ToArray(), seed: 4, columns: columns), fields);
    }

    /// <summary>The recording predates the DNN model's output bias (drawn last, so every other weight is as recorded):
    /// zero, it must leave the logits bit for bit as they were.</summary>
    private static ZooModel WithoutLaterTensors(ZooModel model)
    {
        foreach (var p in model.Parameters())
            if (p.Name == "dnn_out.bias") p.Tensor.AsSpan().Clear();
        return model;
    }

    private static readonly int[] Batches = [1, 7, 64, 300];

    private static string Line(string name, int batch, float[] logits) =>
        $"{name} {batch} " + string.Join(",", logits.Select(v => BitConverter.SingleToInt32Bits(v).ToString("x8", CultureInfo.InvariantCulture)));

    private static float[] Score(ZooModel model, InputField[] inputFields, int batch)
    {
        var ids = Ids(inputFields, batch, seed: 1000 + batch);
        var logits = new float[batch];
        new Predictor(model).Predict(ids, logits);
        return logits;
    }

    private static string Isa => $"isa vector512={Vector512.IsHardwareAccelerated} vector256={Vector256.IsHardwareAccelerated}";

    [Test]
    public void Predictor_logits_are_bit_identical_to_the_recorded_ones()
    {
        var lines = File.ReadAllLines(Path.Combine(TestContext.CurrentContext.TestDirectory, "Serving", "Fixtures", FixtureName));
        if (lines[0] != Isa) Assert.Inconclusive($"recorded on '{lines[0]}', this machine is '{Isa}'");
        var recorded = lines.Skip(1).ToDictionary(l => string.Join(' ', l.Split(' ').Take(2)), l => l);
        int compared = 0;
        foreach (var (name, model, inputFields) in Cases())
            foreach (int batch in Batches)
            {
                string key = $"{name} {batch}";
                Assert.That(recorded.ContainsKey(key), Is.True, $"no recording for {key}");
                Assert.That(Line(name, batch, Score(model, inputFields, batch)), Is.EqualTo(recorded[key]), key);
                compared++;
            }
        Assert.That(compared, Is.EqualTo(recorded.Count));
    }

    /// <summary>Writes the fixture (run explicitly, with KDENGINE_RECORD_TO set to the output path, on the code to record).</summary>
    [Test, Explicit("records the fixture")]
    public void Record()
    {
        string path = Environment.GetEnvironmentVariable("KDENGINE_RECORD_TO") ?? throw new InvalidOperationException("set KDENGINE_RECORD_TO");
        var lines = new List<string> { Isa };
        foreach (var (name, model, inputFields) in Cases())
            foreach (int batch in Batches) lines.Add(Line(name, batch, Score(model, inputFields, batch)));
        File.WriteAllLines(path, lines);
    }
}
