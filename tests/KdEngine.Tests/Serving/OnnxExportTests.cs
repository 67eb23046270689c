using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Onnx;
using KdEngine.Serving;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NUnit.Framework;
using static KdEngine.Tests.Serving.ServingTestModels;

namespace KdEngine.Tests.Serving;

public class OnnxExportTests
{
    private static float[] RunOnnx(byte[] model, int[] ids, int batch, int columns)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var session = new InferenceSession(model, options);
        Assert.That(session.InputMetadata.Keys, Is.EqualTo(new[] { "ids" }));
        Assert.That(session.OutputMetadata.Keys, Is.EqualTo(new[] { "logit" }));
        Assert.That(session.InputMetadata["ids"].ElementType, Is.EqualTo(typeof(long)));
        var input = new DenseTensor<long>(ids.Select(x => (long)x).ToArray(), [batch, columns]);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor("ids", input)]);
        var output = results.Single().AsTensor<float>();
        Assert.That(output.Dimensions.ToArray(), Is.EqualTo(new[] { batch, 1 }));
        return output.ToArray();
    }

    private static void CheckExport(ZooModel model, InputField[] inputFields, int columns)
    {
        var bytes = OnnxExporter.ToBytes(model, columns);
        var predictor = new Predictor(model);
        foreach (int batch in new[] { 1, 13 })
        {
            var ids = Ids(inputFields, batch, seed: 40 + batch, columns);
            var expected = Forward(model, ids, batch);
            Assert.That(Compare(RunOnnx(bytes, ids, batch, columns), expected, 1e-5f), Is.Null, $"ONNX vs training forward, batch {batch}");
            var served = new float[batch];
            predictor.Predict(ids, served);
            Assert.That(Compare(RunOnnx(bytes, ids, batch, columns), served, 1e-5f), Is.Null, $"ONNX vs predictor, batch {batch}");
        }
    }

    [TestCaseSource(typeof(ServingTestModels), nameof(ServingTestModels.Kinds))]
    public void Every_zoo_model_exports_loads_in_onnx_runtime_and_agrees(ModelKind kind)
    {
        var fields = Fields(6);
        CheckExport(Random(Config(kind), fields, seed: 21), fields, fields.Length);
    }

    [Test]
    public void Every_dcn_v2_form_exports()
    {
        var fields = Fields(5);
        foreach (var (rank, experts, stacked) in DcnV2Forms)
            CheckExport(Random(DcnV2(rank, experts, stacked), fields, seed: 9, scale: 0.3f), fields, fields.Length);
    }

    [TestCase(2, 3, false)]
    [TestCase(7, 1, false)]
    [TestCase(5, 3, true)]
    public void Ffm_exports_at_any_field_count(int fieldCount, int dim, bool normalize)
    {
        var fields = Fields(fieldCount);
        CheckExport(Random(new ModelConfig { Model = ModelKind.Ffm, EmbeddingDim = dim, FfmNormalize = normalize }, fields, seed: 4), fields, fields.Length);
    }

    [TestCase(true, Activation.Relu, true)]
    [TestCase(false, Activation.Identity, true)]
    [TestCase(false, Activation.Relu, false)]
    [TestCase(true, Activation.Tanh, true)]
    public void Xdeepfm_cin_variants_export(bool splitHalf, Activation activation, bool direct)
    {
        var fields = Fields(5);
        var config = new ModelConfig
        {
            Model = ModelKind.XDeepFm, EmbeddingDim = 3, Dnn = [7], Cin = [4, 6, 5], CinSplitHalf = splitHalf,
            CinActivation = activation, CinDirectConnections = direct, DnnActivation = Activation.Sigmoid, Seed = 4,
        };
        CheckExport(Random(config, fields, seed: 5), fields, fields.Length);
    }

    [TestCase(ModelKind.Dnn)]
    [TestCase(ModelKind.Wdl)]
    public void A_distilled_student_without_privileged_columns_exports_over_full_rows(ModelKind kind)
    {
        // A PFD-style student: the teacher's rows have 6 columns, the student reads 4 of them (not the privileged 1 and 4).
        var all = Fields(6);
        int[] columns = [0, 2, 3, 5];
        var student = Random(Config(kind), columns.Select(c => all[c]).ToArray(), seed: 7, columns: columns);
        CheckExport(student, all, all.Length);
    }

    [Test]
    public void The_file_declares_opset_17_ir_8_and_a_dynamic_batch()
    {
        var fields = Fields(3);
        string path = Path.Combine(Path.GetTempPath(), $"kdengine-{Guid.NewGuid():N}.onnx");
        try
        {
            OnnxExporter.Export(Random(Config(ModelKind.DeepFm), fields, seed: 1), path);
            var bytes = File.ReadAllBytes(path);
            Assert.That(bytes[0], Is.EqualTo(0x08), "field 1 (ir_version), varint");
            Assert.That(bytes[1], Is.EqualTo(OnnxExporter.IrVersion));
            using var session = new InferenceSession(path);
            Assert.That(session.InputMetadata["ids"].Dimensions, Is.EqualTo(new[] { -1, 3 }));
            Assert.That(session.InputMetadata["ids"].SymbolicDimensions[0], Is.EqualTo("B"));
            Assert.That(session.ModelMetadata.ProducerName, Is.EqualTo("KdEngine"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void Too_few_input_columns_is_an_error()
    {
        var fields = Fields(4);
        var model = Random(Config(ModelKind.Lr), fields, seed: 1);
        var e = Assert.Throws<ArgumentException>(() => OnnxExporter.ToBytes(model, inputColumns: 3));
        Assert.That(e!.Message, Does.Contain("column 3"));
    }
}
