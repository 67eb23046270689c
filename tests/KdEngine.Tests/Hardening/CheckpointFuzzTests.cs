using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Serving;
using KdEngine.Tests.Data;
using NUnit.Framework;

namespace KdEngine.Tests.Hardening;

/// <summary>
/// Model checkpoints as untrusted input: byte-level mutations of signed files (the checksums must catch them),
/// of unsigned files (the structural checks must), and semantic mutations written with valid checksums (the
/// loader's model checks must): every case loads or raises <see cref="CheckpointFormatException"/> naming the
/// file, within a memory bound.
/// </summary>
[TestFixture]
public sealed class CheckpointFuzzTests
{
    private const int Iterations = 250;
    private string _dir = "";

    [OneTimeSetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-ckpt-fuzz", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [OneTimeTearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private static (ZooModel Model, Preprocessor Pre) SmallModel(ModelKind kind = ModelKind.XDeepFm)
    {
        var pre = Preprocessor.FromJson(JsonFuzzTests.PreprocessorSeed());
        var single = pre.FeatureSpace.SingleFields;
        var fields = single.Select(f => new InputField(f.Name, f.Cardinality)).ToArray();
        var config = new ModelConfig { Model = kind, EmbeddingDim = 3, Dnn = [6, 4], Cin = [4, 3], Seed = 5 };
        return (new ZooModel(config, fields, single.Select(f => f.Slot).ToArray()), pre);
    }

    private static string? CheckpointError(CheckpointFormatException e, string path) =>
        e.FilePath == path && e.Message.StartsWith(path + ": ", StringComparison.Ordinal) ? null
            : $"CheckpointFormatException does not name the file {path}: {e.Message}";

    /// <summary>Rewrites the header JSON (without the KdEngine checksum keys) in front of the same data section.</summary>
    internal static byte[] Unsigned(byte[] file)
    {
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        var header = JsonNode.Parse(file.AsSpan(8, (int)n))!.AsObject();
        var meta = header["__metadata__"]!.AsObject();
        foreach (var k in meta.Select(p => p.Key).Where(k => k.StartsWith("kdengine.", StringComparison.Ordinal)).ToList()) meta.Remove(k);
        return WithHeader(header.ToJsonString(), file.AsSpan(8 + (int)n).ToArray());
    }

    private static byte[] WithHeader(string json, byte[] data)
    {
        var h = Encoding.UTF8.GetBytes(json);
        int padded = (h.Length + 7) / 8 * 8;
        var result = new byte[8 + padded + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)padded);
        h.CopyTo(result, 8);
        result.AsSpan(8 + h.Length, padded - h.Length).Fill((byte)' ');
        data.CopyTo(result, 8 + padded);
        return result;
    }

    /// <summary>Recomputes the header checksum after an in-place, same-length edit of the header (an attacker's file).</summary>
    internal static void Resign(byte[] file)
    {
        var key = Encoding.ASCII.GetBytes("\"" + SafeTensorsFile.HeaderSha256Key + "\":\"");
        int at = file.AsSpan().IndexOf(key) + key.Length;
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        file.AsSpan(at, 64).Fill((byte)'0');
        var digest = Convert.ToHexStringLower(SHA256.HashData(file.AsSpan(0, 8 + (int)n)));
        Encoding.ASCII.GetBytes(digest).CopyTo(file, at);
    }

    private FuzzTally RunLoad(string name, Gen<byte[]> gen, ulong seed)
    {
        string path = PathOf(name.Replace(' ', '-') + ".safetensors");
        return Fuzz.Run(name, gen, Iterations, seed,
            bytes =>
            {
                File.WriteAllBytes(path, bytes);
                ModelCheckpoint.Load(path);
            },
            e => Fuzz.Expect<CheckpointFormatException>(e, c => CheckpointError(c, path)),
            describe: b => $"{b.Length} bytes");
    }

    private byte[] SavedBytes(ModelKind kind = ModelKind.XDeepFm)
    {
        var (model, pre) = SmallModel(kind);
        string path = PathOf($"seed-{kind}.safetensors");
        ModelCheckpoint.Save(path, model, pre);
        return File.ReadAllBytes(path);
    }

    [Test]
    public void Byte_mutations_of_a_signed_checkpoint_are_all_caught()
    {
        var seed = SavedBytes();
        var t = RunLoad("signed checkpoint bytes", Fuzz.Mutated(seed), 21_000);
        // Only a mutation that changes nothing (e.g. duplicating an empty range) can load.
        Assert.That(t.Rejected, Is.GreaterThan(Iterations * 9 / 10));
    }

    [Test]
    public void Byte_mutations_of_an_unsigned_checkpoint()
    {
        var seed = Unsigned(SavedBytes());
        Assert.That(ModelCheckpoint.Load(Write("unsigned.safetensors", seed)).Model, Is.Not.Null, "the unsigned file itself loads");
        RunLoad("unsigned checkpoint bytes", Fuzz.Mutated(seed), 22_000);
    }

    private string Write(string name, byte[] bytes)
    {
        var p = PathOf(name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    /// <summary>One semantic edit: which metadata entry or tensor to change, and how.</summary>
    private static readonly Gen<(int What, Mutation[] Edits, int Pick)> SemanticEdit =
        Gen.Select(Gen.Int[0, 9], Fuzz.MutationGen.Array[1, 3], Gen.Int[0, 1000]);

    [Test]
    public void Semantic_mutations_written_with_valid_checksums()
    {
        var (model, pre) = SmallModel();
        string seedPath = PathOf("semantic-seed.safetensors");
        ModelCheckpoint.Save(seedPath, model, pre);
        var content = SafeTensorsFile.Read(seedPath);
        var meta = content.Metadata.Where(kv => !kv.Key.StartsWith("kdengine.", StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        string[] metaKeys = [ModelCheckpoint.TypeKey, ModelCheckpoint.ConfigKey, ModelCheckpoint.FieldsKey, ModelCheckpoint.ColumnsKey, ModelCheckpoint.PreprocessingKey];
        string path = PathOf("semantic.safetensors");
        var t = Fuzz.Run("semantic checkpoint edits (signed)", SemanticEdit, Iterations, 23_000,
            edit =>
            {
                var m = new Dictionary<string, string>(meta, StringComparer.Ordinal);
                var tensors = content.Names.Select(n => content.Get(n)).ToList();
                var (what, edits, pick) = edit;
                int ti = pick % tensors.Count;
                var victim = tensors[ti];
                switch (what)
                {
                    case < 5: // mutate one metadata JSON value
                        var key = metaKeys[what];
                        m[key] = Encoding.UTF8.GetString(Fuzz.Apply(Encoding.UTF8.GetBytes(m[key]), edits));
                        break;
                    case 5: tensors.RemoveAt(ti); break; // a missing tensor
                    case 6: tensors[ti] = NamedArray.Float32(victim.Name + "x", victim.AsFloat32().ToArray(), victim.Shape.ToArray()); break;
                    case 7: // the same values in another shape
                        tensors[ti] = NamedArray.Float32(victim.Name, victim.AsFloat32().ToArray(), victim.Shape.Count == 2 ? [victim.Shape[1], victim.Shape[0]] : [1, victim.Shape[0]]);
                        break;
                    case 8: // another dtype
                        tensors[ti] = NamedArray.Float64(victim.Name, victim.AsFloat32().ToArray().Select(v => (double)v).ToArray(), victim.Shape.ToArray());
                        break;
                    default: // one extra row
                        var data = victim.AsFloat32().ToArray().Concat(new float[victim.Shape.Count == 2 ? victim.Shape[1] : 1]).ToArray();
                        tensors[ti] = NamedArray.Float32(victim.Name, data, victim.Shape.Count == 2 ? [victim.Shape[0] + 1, victim.Shape[1]] : [victim.Shape[0] + 1]);
                        break;
                }
                SafeTensorsFile.Write(path, tensors, m);
                ModelCheckpoint.Load(path);
            },
            e => Fuzz.Expect<CheckpointFormatException>(e, c => CheckpointError(c, path)),
            describe: e => $"what {e.What}, pick {e.Pick}, edits {string.Join("; ", e.Edits)}");
        Assert.That(t.Rejected, Is.GreaterThan(0));
    }

    [Test]
    public void Parameter_count_from_the_config_matches_the_built_model()
    {
        var fields = new InputField[] { new("a", 5), new("b", 9), new("c", 2) };
        foreach (var kind in Enum.GetValues<ModelKind>())
            foreach (var (split, direct) in new[] { (true, true), (false, true), (false, false) })
            {
                var config = new ModelConfig { Model = kind, EmbeddingDim = 3, Dnn = [7, 5], Cin = [6, 4, 3], CinSplitHalf = split, CinDirectConnections = direct, CrossLayers = 2 };
                Assert.That(ZooModel.ParameterCount(config, fields), Is.EqualTo(new ZooModel(config, fields).ParameterCount()), $"{kind} split {split} direct {direct}");
            }
    }

    [Test]
    public void An_xdeepfm_config_over_dnn_tensors_is_a_wrong_model_error()
    {
        var bytes = SavedBytes(ModelKind.Dnn);
        var content = SafeTensorsFile.Read(Write("dnn.safetensors", bytes));
        var meta = content.Metadata.Where(kv => !kv.Key.StartsWith("kdengine.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key, kv => kv.Value);
        var config = ModelConfig.FromJson(meta[ModelCheckpoint.ConfigKey]) with { Model = ModelKind.XDeepFm };
        meta[ModelCheckpoint.ConfigKey] = config.ToJson();
        string path = PathOf("xdeepfm-over-dnn.safetensors");
        SafeTensorsFile.Write(path, content.Names.Select(content.Get), meta);
        var e = Assert.Throws<CheckpointFormatException>(() => ModelCheckpoint.Load(path))!;
        Assert.That(e.Message, Does.StartWith(path + ": the config (XDeepFm").And.Contain("different models (wrong model type or shapes)"));
    }

    [Test]
    public void A_header_claiming_a_huge_vocabulary_fails_before_allocating_the_model()
    {
        // Fields metadata claiming 2·10^9 ids of a 4096-wide embedding (32 TB of weights), with valid checksums.
        var (model, pre) = SmallModel(ModelKind.Dnn);
        string path = PathOf("huge.safetensors");
        ModelCheckpoint.Save(path, model);
        var content = SafeTensorsFile.Read(path);
        var meta = content.Metadata.Where(kv => !kv.Key.StartsWith("kdengine.", StringComparison.Ordinal)).ToDictionary(kv => kv.Key, kv => kv.Value);
        meta[ModelCheckpoint.FieldsKey] = System.Text.Json.JsonSerializer.Serialize(model.Fields.Select(f => new[] { f.Name, "2000000000" }));
        meta[ModelCheckpoint.ConfigKey] = (model.Config with { EmbeddingDim = 4096 }).ToJson();
        SafeTensorsFile.Write(path, content.Names.Select(content.Get), meta);
        var (parsed, problem, allocated, _) = Fuzz.RunOne(() => ModelCheckpoint.Load(path),
            e => Fuzz.Expect<CheckpointFormatException>(e, c => c.Message.Contains("describes") ? null : c.Message));
        Assert.That(parsed, Is.False);
        Assert.That(problem, Is.Null);
        Assert.That(allocated, Is.LessThan(8L << 20));
    }

    [Test]
    public void Preprocessing_that_disagrees_with_the_model_fields_is_rejected()
    {
        var (model, pre) = SmallModel(ModelKind.Wdl);
        var other = Preprocessor.FromJson(JsonFuzzTests.PreprocessorSeed().Replace("\"hour\"", "\"hour2\""));
        string path = PathOf("mismatch.safetensors");
        ModelCheckpoint.Save(path, model, other);
        var e = Assert.Throws<CheckpointFormatException>(() => ModelCheckpoint.Load(path))!;
        Assert.That(e.Message, Does.Contain("model field 'hour' is not a field of the saved preprocessing"));
    }

    [Test]
    public void Wrong_model_type_and_wrong_format_version_name_the_problem()
    {
        var bytes = SavedBytes(ModelKind.Lr);
        var header = Encoding.UTF8.GetString(bytes, 8, (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes));
        // Same-length in-place edits, re-signed so that the checksums do not hide the real check.
        var typed = (byte[])bytes.Clone();
        int at = header.IndexOf("\"kdengine.zoo\"", StringComparison.Ordinal) + 8;
        Encoding.ASCII.GetBytes("\"pickle.zoo\"  ").CopyTo(typed, at);
        Resign(typed);
        var e = Assert.Throws<CheckpointFormatException>(() => ModelCheckpoint.Load(Write("type.safetensors", typed)))!;
        Assert.That(e.Message, Does.Contain("model type 'pickle.zoo' is not 'kdengine.zoo'"));

        var versioned = (byte[])bytes.Clone();
        at = header.IndexOf("\"kdengine.format_version\":\"1\"", StringComparison.Ordinal) + 8 + "\"kdengine.format_version\":\"".Length;
        versioned[at] = (byte)'2';
        Resign(versioned);
        e = Assert.Throws<CheckpointFormatException>(() => ModelCheckpoint.Load(Write("version.safetensors", versioned)))!;
        Assert.That(e.Message, Does.Contain("format version '2' is not supported"));
    }

    [Test]
    public void A_failed_load_changes_nothing_the_caller_holds()
    {
        // Load builds a new model and returns it only after every check; a failure leaves the process state
        // unchanged, so loading the good file afterwards gives exactly its weights.
        var (model, pre) = SmallModel();
        string good = PathOf("good.safetensors");
        ModelCheckpoint.Save(good, model, pre);
        var bytes = File.ReadAllBytes(good);
        bytes[^3] ^= 0x10;
        Assert.Throws<CheckpointFormatException>(() => ModelCheckpoint.Load(Write("bad.safetensors", bytes)));
        var loaded = ModelCheckpoint.Load(good).Model.Parameters();
        var original = model.Parameters();
        for (int i = 0; i < original.Count; i++)
            Assert.That(loaded[i].Tensor.ToArray(), Is.EqualTo(original[i].Tensor.ToArray()), original[i].Name);
    }

    // ---- cached teacher logits: TeacherLogitCache is written on another branch; these are the generic checks
    // ---- such a file gets from SafeTensorsFile (the same reader).

    [Test]
    public void Teacher_logit_file_checks_shape_dtype_and_bounds_before_allocating()
    {
        string path = PathOf("logits.safetensors");
        var logits = Enumerable.Range(0, 100).Select(i => (float)Math.Sin(i)).ToArray();
        SafeTensorsFile.Write(path, [NamedArray.Float32("logits", logits, [100, 1]), NamedArray.Int64("rows", Enumerable.Range(0, 100).Select(i => (long)i).ToArray(), [100])],
            new Dictionary<string, string> { ["teacher"] = "xdeepfm" });
        var content = SafeTensorsFile.Read(path);
        Assert.That(content.GetFloat32("logits", [100, 1]).ToArray(), Is.EqualTo(logits));
        // A cache for another dataset size, or read with the wrong dtype, names the tensor.
        Assert.That(Assert.Throws<CheckpointFormatException>(() => content.GetFloat32("logits", [99, 1]))!.Message,
            Does.Contain("tensor 'logits' has shape [100, 1], expected [99, 1]"));
        Assert.That(Assert.Throws<CheckpointFormatException>(() => content.GetFloat32("rows"))!.Message, Does.Contain("is I64, expected F32"));

        // Every truncation and a sample of bit flips: a library error, never another exception.
        var bytes = File.ReadAllBytes(path);
        var flipped = Fuzz.Run("teacher-logit file bytes", Fuzz.Mutated(bytes), 150, 24_000,
            b => SafeTensorsFile.Read(new MemoryStream(b), "logits.safetensors").GetFloat32("logits", [100, 1]),
            e => Fuzz.Expect<CheckpointFormatException>(e, c => c.FilePath == "logits.safetensors" ? null : c.Message),
            describe: b => $"{b.Length} bytes");
        Assert.That(flipped.Rejected, Is.GreaterThan(140));

        // A header claiming 10^9 rows of logits in a small file fails on the offsets, before any allocation.
        var fake = WithHeader("{\"logits\":{\"dtype\":\"F32\",\"shape\":[1000000000,1],\"data_offsets\":[0,4000000000]}}", new byte[16]);
        var (parsed, problem, allocated, _) = Fuzz.RunOne(() => SafeTensorsFile.Read(new MemoryStream(fake), "fake.safetensors"),
            e => Fuzz.Expect<CheckpointFormatException>(e, c => c.Message.Contains("outside the data section") ? null : c.Message));
        Assert.That((parsed, problem), Is.EqualTo((false, (string?)null)));
        Assert.That(allocated, Is.LessThan(1L << 20));
    }
}
