using System.Globalization;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Serving;

namespace KdEngine.Server.Tests;

/// <summary>
/// Small checkpoints for the service tests: a schema with every kind a request can carry (numeric, vocabulary and
/// hashed categorical, a multi-valued field the models do not read, a user id), a preprocessor fitted on seeded rows,
/// and models with random (not initial) weights so every part moves the score.
/// </summary>
internal static class TestModels
{
    public static Schema Schema() => new([
        FieldSpec.Label(),
        FieldSpec.Numeric("I1"),
        FieldSpec.Numeric("I2"),
        FieldSpec.Categorical("user_city"),
        FieldSpec.Categorical("item_id"),
        FieldSpec.Categorical("item_shop") with { HashBuckets = 7 },
        FieldSpec.Multi("tags"),
        FieldSpec.UserId("uid"),
    ]);

    public static Preprocessor Preprocessor(Schema schema, int seed = 5)
    {
        var rng = new Random(seed);
        var train = new List<RawRecord>();
        for (int i = 0; i < 400; i++)
        {
            var r = new RawRecord(schema);
            r.Values[schema.IndexOf("I1")] = rng.Next(100).ToString(CultureInfo.InvariantCulture);
            r.Values[schema.IndexOf("I2")] = rng.Next(3) == 0 ? null : (rng.NextDouble() * 50).ToString("R", CultureInfo.InvariantCulture);
            r.Values[schema.IndexOf("user_city")] = "city" + rng.Next(8);
            r.Values[schema.IndexOf("item_id")] = "item" + rng.Next(40);
            r.Values[schema.IndexOf("item_shop")] = "shop" + rng.Next(30);
            r.Values[schema.IndexOf("tags")] = "t" + rng.Next(5) + "|t" + rng.Next(5);
            train.Add(r);
        }
        return KdEngine.Data.Preprocessor.Fit(schema, train, new PreprocessorOptions { MinCount = 2 });
    }

    /// <summary>A model over the preprocessor's single-valued fields with weights uniform in ±scale.</summary>
    public static ZooModel Model(Preprocessor pre, ModelKind kind, int seed, float scale = 0.4f)
    {
        var fields = pre.FeatureSpace.SingleFields.Select(f => new InputField(f.Name, f.Cardinality)).ToArray();
        var config = new ModelConfig { Model = kind, EmbeddingDim = 6, Dnn = [16, 8], Cin = [6, 4], Seed = seed };
        var model = new ZooModel(config, fields) { Training = false };
        var rng = new Random(seed);
        foreach (var p in model.Parameters())
        {
            var s = p.Tensor.AsSpan();
            for (int i = 0; i < s.Length; i++) s[i] = (float)(rng.NextDouble() * 2 - 1) * scale;
        }
        return model;
    }

    /// <summary>Writes a checkpoint (with its preprocessing) and returns its path.</summary>
    public static string Save(string dir, string file, ZooModel model, Preprocessor? pre)
    {
        var path = Path.Combine(dir, file);
        ModelCheckpoint.Save(path, model, pre);
        return path;
    }

    /// <summary>Two DNN checkpoints with different weights over one preprocessor (a model and its retrained successor).</summary>
    public static (string A, string B, Preprocessor Pre) Pair(string dir, ModelKind kind = ModelKind.Dnn)
    {
        var pre = Preprocessor(Schema());
        return (Save(dir, "a.kde", Model(pre, kind, 1), pre), Save(dir, "b.kde", Model(pre, kind, 2), pre), pre);
    }

    /// <summary>A copy of <paramref name="path"/> with one byte of tensor data flipped (its data checksum no longer matches).</summary>
    public static string Corrupt(string path, string copy)
    {
        var bytes = File.ReadAllBytes(path);
        bytes[^5] ^= 0x40;
        File.WriteAllBytes(copy, bytes);
        return copy;
    }

    /// <summary>Replaces <paramref name="target"/> by <paramref name="source"/>'s bytes atomically (how a rollout drops a new file in place).</summary>
    public static void Install(string source, string target)
    {
        var tmp = target + ".incoming";
        File.Copy(source, tmp, overwrite: true);
        File.Move(tmp, target, overwrite: true);
    }

    /// <summary>Seeded raw rows as (JSON object text, RawRecord): values of every kind, some missing, some unseen.</summary>
    public static (string Json, RawRecord Record)[] Rows(Schema schema, int count, int seed)
    {
        var rng = new Random(seed);
        var rows = new (string, RawRecord)[count];
        for (int i = 0; i < count; i++)
        {
            var r = new RawRecord(schema);
            var parts = new List<string>();
            int i1 = rng.Next(120);
            if (rng.Next(5) > 0) { r.Numbers[schema.IndexOf("I1")] = i1; parts.Add($"\"I1\": {i1}"); }
            if (rng.Next(3) > 0)
            {
                double i2 = Math.Round(rng.NextDouble() * 60, 3);
                r.Numbers[schema.IndexOf("I2")] = i2;
                parts.Add(rng.Next(2) == 0 ? $"\"I2\": {i2.ToString("R", CultureInfo.InvariantCulture)}" : $"\"I2\": \"{i2.ToString("R", CultureInfo.InvariantCulture)}\"");
            }
            else if (rng.Next(2) == 0) parts.Add("\"I2\": null");
            string city = "city" + rng.Next(10); // city8, city9: unseen → OOV
            r.Values[schema.IndexOf("user_city")] = city;
            parts.Add($"\"user_city\": \"{city}\"");
            string item = "item" + rng.Next(45);
            r.Values[schema.IndexOf("item_id")] = item;
            parts.Add($"\"item_id\": \"{item}\"");
            if (rng.Next(4) > 0)
            {
                string shop = "shop" + rng.Next(35);
                r.Values[schema.IndexOf("item_shop")] = shop;
                parts.Add($"\"item_shop\": \"{shop}\"");
            }
            string t1 = "t" + rng.Next(6), t2 = "t" + rng.Next(6);
            r.Values[schema.IndexOf("tags")] = t1 + "|" + t2;
            parts.Add($"\"tags\": [\"{t1}\", \"{t2}\"]");
            rows[i] = ("{" + string.Join(", ", parts) + "}", r);
        }
        return rows;
    }

    /// <summary>Probabilities the Predictor gives for <paramref name="records"/> in one call (the reference for the service).</summary>
    public static float[] Expected(Predictor predictor, IReadOnlyList<RawRecord> records)
    {
        var p = new float[records.Count];
        predictor.PredictRaw(records, p);
        Batching.Probabilities.FromLogits(p);
        return p;
    }
}
