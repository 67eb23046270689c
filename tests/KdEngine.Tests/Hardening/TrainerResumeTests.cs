using KdEngine.Data;
using KdEngine.Kernels.Cpu;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Ops;
using KdEngine.Serving;
using KdEngine.Tensors;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Hardening;

/// <summary>Divergence detection, periodic training checkpoints and bit-identical resume.</summary>
[TestFixture]
[NonParallelizable]
public sealed class TrainerResumeTests
{
    private string _dir = "";
    private int _threads;

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-resume", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
        _threads = CpuParallel.ThreadCount;
        CpuParallel.ThreadCount = 1;
    }

    [TearDown]
    public void TearDown()
    {
        CpuParallel.ThreadCount = _threads;
        Directory.Delete(_dir, recursive: true);
    }

    private static readonly EncodedDataset Train = new SyntheticCtr(new SyntheticCtrOptions { Fields = 5, VocabSize = 40, Seed = 3 }).Generate(600);
    private static readonly EncodedDataset Valid = new SyntheticCtr(new SyntheticCtrOptions { Fields = 5, VocabSize = 40, Seed = 4 }).Generate(200);

    private static ZooModel NewModel(ModelKind kind = ModelKind.DeepFm)
    {
        var (fields, columns, _) = ModelInputs.From(Train.FeatureSpace);
        var config = new ModelConfig { Model = kind, EmbeddingDim = 4, Dnn = [16, 8], Dropout = 0.25f, Seed = 7 };
        return new ZooModel(config, fields, columns);
    }

    private static Adam NewAdam(Module m) =>
        new(m.Parameters().Select(p => p.Tensor), learningRate: 5e-3f) { DenseL2 = 1e-4f, ClipNorm = 5f };

    private static TrainerOptions Options(string? checkpoint = null, int every = 0) => new()
    {
        Epochs = 2,
        BatchSize = 64,          // 10 steps per epoch
        EvaluateEvery = 4,
        Patience = 10,
        RestoreBest = true,
        Shuffle = true,
        Seed = 11,
        Schedule = LearningRateSchedule.Cosine(5e-3f, decaySteps: 20, warmupSteps: 3),
        CheckpointPath = checkpoint,
        CheckpointEvery = every,
    };

    /// <summary>An objective that dies (as a killed process would) when it reaches <paramref name="crashAt"/>.</summary>
    private sealed class Crashing(IObjective inner, long crashAt) : IObjective
    {
        public Module Trainable => inner.Trainable;
        public CtrModel Predictor => inner.Predictor;

        public Tensor<float> Loss(in CtrBatch batch, long step, IDictionary<string, float>? terms) =>
            step == crashAt && inner.Trainable.Training ? throw new IOException($"simulated crash at step {step}") : inner.Loss(batch, step, terms);
    }

    [TestCase(7, 13, false)]
    [TestCase(5, 12, false)]  // the checkpoint sits exactly at the end of epoch 1
    [TestCase(3, 19, false)]
    [TestCase(7, 13, true)]   // deferred weight decay, logloss-guarded selection, reduce-on-plateau
    [TestCase(5, 17, true)]
    public void Resuming_from_a_checkpoint_is_bit_identical_to_an_uninterrupted_run(int every, int crashAt, bool regularized)
    {
        TrainerOptions Opts(string? path = null, int e = 0) => regularized
            ? Options(path, e) with { Metric = StoppingMetric.Both, PlateauFactor = 0.5, Patience = 20 }
            : Options(path, e);
        Adam Opt(Module m)
        {
            var adam = NewAdam(m);
            if (regularized) adam.EmbeddingWeightDecay = 0.5f;
            return adam;
        }
        var straightModel = NewModel();
        var straight = new Trainer(Opts()).Fit(new SupervisedObjective(straightModel), Opt(straightModel), Train, Valid);

        string path = Path.Combine(_dir, "run.ckpt");
        var first = NewModel();
        Assert.Throws<IOException>(() => new Trainer(Opts(path, every)).Fit(new Crashing(new SupervisedObjective(first), crashAt), Opt(first), Train, Valid));

        // New objects, as in a new process.
        var resumedModel = NewModel();
        var resumed = new Trainer(Opts(path, every)).Resume(path, new SupervisedObjective(resumedModel), Opt(resumedModel), Train, Valid);

        Assert.That(resumed.Steps, Is.EqualTo(straight.Steps));
        Assert.That(resumed.History, Is.EqualTo(straight.History), "validation points (AUC, logloss, train loss) match exactly");
        Assert.That(resumed.Best, Is.EqualTo(straight.Best));
        var a = straightModel.Parameters();
        var b = resumedModel.Parameters();
        for (int i = 0; i < a.Count; i++)
            Assert.That(BitsOf(b[i].Tensor), Is.EqualTo(BitsOf(a[i].Tensor)), a[i].Name);
    }

    private static int[] BitsOf(Tensor<float> t) => t.ToArray().Select(BitConverter.SingleToInt32Bits).ToArray();

    [Test]
    public void Dropout_masks_depend_on_the_step_not_on_earlier_calls()
    {
        var x = Tensor<float>.FromArray(Enumerable.Range(0, 64).Select(i => 1f + i).ToArray(), new Shape(4, 16));
        float[] MaskAt(Mlp mlp, long step)
        {
            mlp.RandomStep = step;
            using var tape = new KdEngine.Autograd.Tape<float>();
            return mlp.Forward(x).ToArray();
        }
        var one = new Mlp(16, [32], Activation.Identity, 0.5f, new Random(1));
        var two = new Mlp(16, [32], Activation.Identity, 0.5f, new Random(1));
        var at5 = MaskAt(one, 5);
        MaskAt(two, 0); MaskAt(two, 1); MaskAt(two, 2); // a different history
        Assert.That(MaskAt(two, 5), Is.EqualTo(at5));
        Assert.That(MaskAt(one, 6), Is.Not.EqualTo(at5), "another step draws another mask");
    }

    [Test]
    public void A_nan_weight_stops_training_at_that_step_naming_the_loss()
    {
        var model = NewModel();
        model.Parameters().First(p => p.Name == "dnn_out.weight").Tensor.AsSpan()[0] = float.NaN;
        var e = Assert.Throws<TrainingDivergedException>(() => new Trainer(Options()).Fit(new SupervisedObjective(model), NewAdam(model), Train, null))!;
        // BceWithLogits rejects the NaN logits; the trainer reports the cause: the step and the bad weight.
        Assert.That(e.Message, Does.StartWith("training diverged at step 0 (epoch 1): parameter 'dnn_out.weight' [1, 8] holds NaN or Inf"));
    }

    /// <summary>Identity forward, infinite gradient: the loss stays finite, the gradient check must catch it.</summary>
    private sealed class InfiniteGradient(CtrModel model, long fromStep) : IObjective
    {
        public Module Trainable => model;
        public CtrModel Predictor => model;

        public Tensor<float> Loss(in CtrBatch batch, long step, IDictionary<string, float>? terms)
        {
            var loss = Op.BceWithLogits(model.Forward(batch).Logits, SupervisedObjective.LabelTensor(batch));
            return step >= fromStep ? Op.GradScale(loss, float.PositiveInfinity) : loss;
        }
    }

    [Test]
    public void An_infinite_gradient_names_the_step_and_the_tensor_and_keeps_the_last_good_checkpoint()
    {
        string path = Path.Combine(_dir, "diverge.ckpt");
        var model = NewModel(ModelKind.Wdl);
        var options = Options(path, 2) with { EvaluateEvery = 0 };
        var e = Assert.Throws<TrainingDivergedException>(() => new Trainer(options).Fit(new InfiniteGradient(model, 5), NewAdam(model), Train, null))!;
        Assert.That(e.Message, Does.StartWith("training diverged at step 5: the gradient of '").And.Contain("holds NaN or Inf"));

        // The last good checkpoint (step 4) is intact, and a run resumed from it with a sane objective completes.
        var saved = SafeTensorsFile.Read(path);
        Assert.That(saved.Metadata[TrainingCheckpoint.PositionKey], Does.Contain("\"Step\":4"));
        var fresh = NewModel(ModelKind.Wdl);
        var report = new Trainer(options).Resume(path, new SupervisedObjective(fresh), NewAdam(fresh), Train, null);
        Assert.That(report.Steps, Is.EqualTo(20));
        Assert.That(fresh.Parameters().All(p => p.Tensor.ToArray().All(float.IsFinite)));
    }

    [Test]
    public void A_huge_learning_rate_diverges_with_a_message_naming_the_step()
    {
        var model = NewModel(ModelKind.DeepFm);
        var sgd = new Sgd(model.Parameters().Select(p => p.Tensor), learningRate: 1e35f);
        var e = Assert.Throws<TrainingDivergedException>(() => new Trainer(Options() with { Schedule = null }).Fit(new SupervisedObjective(model), sgd, Train, null))!;
        Assert.That(e.Message, Does.Match(@"^training diverged at step [1-9]\d*( \(epoch \d\): (the loss is|parameter '|the forward pass overflowed)|: the gradient of ')"));
        Assert.That(e.Message, Does.Contain("BceWithLogits").Or.Contain("gradient").Or.Contain("loss is"), "the tensor or op at fault is named");
    }

    [Test]
    public void Resume_rejects_a_checkpoint_of_another_run_and_changes_nothing()
    {
        string path = Path.Combine(_dir, "other.ckpt");
        var model = NewModel();
        new Trainer(Options(path, 5)).Fit(new SupervisedObjective(model), NewAdam(model), Train, Valid);

        // Another batch size: the data order would differ.
        var target = NewModel();
        var before = target.Parameters().Select(p => p.Tensor.ToArray()).ToArray();
        var e = Assert.Throws<CheckpointFormatException>(() => new Trainer(Options(path, 5) with { BatchSize = 32 }).Resume(path, new SupervisedObjective(target), NewAdam(target), Train, Valid))!;
        Assert.That(e.Message, Does.Contain("batchSize=64").And.Contain("batchSize=32"));

        // Another model (xDeepFM has CIN tensors the DeepFM checkpoint lacks).
        var other = NewModel(ModelKind.XDeepFm);
        var otherBefore = other.Parameters().Select(p => p.Tensor.ToArray()).ToArray();
        var adam = NewAdam(other);
        e = Assert.Throws<CheckpointFormatException>(() => new Trainer(Options(path, 5)).Resume(path, new SupervisedObjective(other), adam, Train, Valid))!;
        Assert.That(e.Message, Does.Contain("tensor 'model.cin"));
        Assert.That(other.Parameters().Select(p => p.Tensor.ToArray()), Is.EqualTo(otherBefore));
        Assert.That(adam.StepCount, Is.Zero);
        Assert.That(target.Parameters().Select(p => p.Tensor.ToArray()), Is.EqualTo(before));

        // A model checkpoint is not a training checkpoint.
        string modelFile = Path.Combine(_dir, "model.safetensors");
        ModelCheckpoint.Save(modelFile, model);
        e = Assert.Throws<CheckpointFormatException>(() => new Trainer(Options(path, 5)).Resume(modelFile, new SupervisedObjective(target), NewAdam(target), Train, Valid))!;
        Assert.That(e.Message, Does.Contain("not a KdEngine training checkpoint"));
    }

    [Test]
    public void Checkpoint_options_are_validated()
    {
        Assert.That(Assert.Throws<ArgumentException>(() => new Trainer(Options(null, 3)))!.Message, Does.Contain("needs a checkpointPath"));
        Assert.That(Assert.Throws<ArgumentException>(() => new Trainer(Options("x", -1)))!.Message, Does.Contain("checkpointEvery = -1"));
    }
}
