using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Training;
using NUnit.Framework;

namespace KdEngine.Tests.Training;

public class StreamingTrainingTests
{
    /// <summary>
    /// Trains from a file through a seeded shuffle buffer, never holding the training rows in memory: the model
    /// learns (validation AUC well above chance) and the run is deterministic for a seed.
    /// </summary>
    [Test]
    public void A_file_trains_in_streaming_passes_through_a_shuffle_buffer_deterministically()
    {
        var generator = new SyntheticCtr(new SyntheticCtrOptions { Fields = 6, VocabSize = 50, Seed = 3 });
        string dir = Path.Combine(Path.GetTempPath(), "kdengine-stream-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string all = Path.Combine(dir, "all.tsv"), train = Path.Combine(dir, "train.tsv"), valid = Path.Combine(dir, "valid.tsv");
            generator.WriteCriteoTsv(all, 8000);
            var lines = File.ReadAllLines(all);
            File.WriteAllLines(train, lines[..6000]);  // rows 0–5999 stream from disk
            File.WriteAllLines(valid, lines[6000..]);  // rows 6000–7999: held out
            var options = new DelimitedOptions { HasHeader = false };
            var preprocessor = Preprocessor.Fit(generator.Schema, new DelimitedReader(train, generator.Schema, options));
            var validation = preprocessor.EncodeAll(new DelimitedReader(valid, generator.Schema, options));

            float[] TrainOnce()
            {
                var fields = ModelInputs.From(preprocessor.FeatureSpace);
                var model = new ZooModel(new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = 4, Dnn = [16], Seed = 1 }, fields.Fields, fields.Columns);
                var objective = new SupervisedObjective(model);
                var optimizer = new Adam(model.Parameters().Select(p => p.Tensor), 0.01f);
                var trainer = new Trainer(new TrainerOptions { Epochs = 2, BatchSize = 128, Patience = 0, Seed = 5 });
                var report = trainer.FitStream(objective, optimizer,
                    epoch => Streaming.Batches(new DelimitedReader(train, generator.Schema, options), preprocessor, 128, shuffleBuffer: 1000, seed: 5 + epoch),
                    validation);
                Assert.That(report.Steps, Is.EqualTo(2 * (6000 / 128 + 1)));
                Assert.That(report.Best!.Auc, Is.GreaterThan(0.65), "the model learns from the stream");
                return model.Parameters().SelectMany(p => p.Tensor.ToArray()).ToArray();
            }
            Assert.That(TrainOnce(), Is.EqualTo(TrainOnce()), "same seed and file → same weights");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
