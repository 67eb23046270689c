using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using KdEngine.Serving;
using NUnit.Framework;

namespace KdEngine.Tests.Serving;

public class SafeTensorsTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-safetensors-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>Length prefix + header (padded with spaces to a multiple of 8, as the reference writer does) + data.</summary>
    private static byte[] HandBuilt(string headerJson, byte[] data, bool pad = true)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        int n = pad ? header.Length + (8 - header.Length % 8) % 8 : header.Length;
        var file = new byte[8 + n + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)n);
        header.CopyTo(file, 8);
        file.AsSpan(8 + header.Length, n - header.Length).Fill((byte)' ');
        data.CopyTo(file, 8 + n);
        return file;
    }

    private static byte[] LittleEndianFloats(params float[] values)
    {
        var b = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(4 * i), values[i]);
        return b;
    }

    private CheckpointFormatException ReadFails(byte[] file, string name = "bad.safetensors")
    {
        string p = PathOf(name);
        File.WriteAllBytes(p, file);
        return Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Read(p))!;
    }

    private static NamedArray[] SampleTensors()
    {
        var rng = new Random(3);
        var w = new float[4 * 3];
        for (int i = 0; i < w.Length; i++) w[i] = (float)rng.NextDouble() - 0.5f;
        w[5] = float.NaN; w[6] = -0f; w[7] = float.Epsilon; w[8] = float.NegativeInfinity;
        return
        [
            NamedArray.Float32("dnn.0.weight", w, 4, 3),
            NamedArray.Float32("dnn.0.bias", [0.25f, -1f, 3.5f, 1e-30f], 4),
            NamedArray.Float64("teacher.logits", [Math.PI, -Math.E, double.MaxValue], 3),
            NamedArray.Int32("ids", [1, -2, int.MaxValue, int.MinValue, 0, 7], 2, 3),
            NamedArray.Int64("counts", [long.MaxValue, long.MinValue], 2),
            NamedArray.Float32("scalar", [42f]),
            NamedArray.Float32("empty", [], 0, 5),
            NamedArray.BFloat16("embedding.C1.weight", [0x3F80, 0x7FC0, 0x8000, 0xFF80, 0x0001, 0x1234], 3, 2),
            NamedArray.Int8("dnn.1.weight", [-127, 127, 0, 1, -1, 5, 99], 7),
        ];
    }

    private static byte[] BytesOf(NamedArray a) => a.DType switch
    {
        TensorDType.F32 => a.AsFloat32().ToArray().SelectMany(BitConverter.GetBytes).ToArray(),
        TensorDType.F64 => a.AsFloat64().ToArray().SelectMany(BitConverter.GetBytes).ToArray(),
        TensorDType.I32 => a.AsInt32().ToArray().SelectMany(BitConverter.GetBytes).ToArray(),
        TensorDType.BF16 => a.AsBFloat16().ToArray().SelectMany(BitConverter.GetBytes).ToArray(),
        TensorDType.I8 => a.AsInt8().ToArray().Select(x => (byte)x).ToArray(),
        _ => a.AsInt64().ToArray().SelectMany(BitConverter.GetBytes).ToArray(),
    };

    [Test]
    public void Round_trip_is_bit_identical_for_every_dtype_and_keeps_metadata()
    {
        var tensors = SampleTensors();
        var meta = new Dictionary<string, string> { ["model"] = "dnn", ["config"] = "{\"hidden\": [400, 400]}", ["ünïcode"] = "ok ✓" };
        string p = PathOf("model.kde");
        SafeTensorsFile.Write(p, tensors, meta);
        var c = SafeTensorsFile.Read(p);

        Assert.That(c.Names, Is.EqualTo(tensors.Select(t => t.Name).OrderBy(n => n, StringComparer.Ordinal)));
        foreach (var t in tensors)
        {
            var r = c.Get(t.Name);
            Assert.That(r.DType, Is.EqualTo(t.DType), t.Name);
            Assert.That(r.Shape, Is.EqualTo(t.Shape), t.Name);
            Assert.That(BytesOf(r), Is.EqualTo(BytesOf(t)), t.Name);
        }
        foreach (var (k, v) in meta) Assert.That(c.Metadata[k], Is.EqualTo(v));
        Assert.That(c.Metadata[SafeTensorsFile.FormatVersionKey], Is.EqualTo("1"));
        Assert.That(c.GetFloat32("dnn.0.weight", [4, 3]).Length, Is.EqualTo(12));
        Assert.That(c.GetInt64("counts")[1], Is.EqualTo(long.MinValue));
        Assert.That(c.GetFloat32("scalar", []).ToArray(), Is.EqualTo(new[] { 42f }));
        Assert.That(c.GetBFloat16("embedding.C1.weight", [3, 2])[5], Is.EqualTo((ushort)0x1234));
        Assert.That(c.GetInt8("dnn.1.weight", [7])[0], Is.EqualTo((sbyte)-127));
        Assert.That(c.DTypeOf("dnn.1.weight"), Is.EqualTo(TensorDType.I8));
        Assert.That(Directory.GetFiles(_dir), Is.EqualTo(new[] { p }), "no temporary file left behind");
    }

    [Test]
    public void A_long_metadata_value_is_written_in_segments_with_the_same_bytes_as_one_string()
    {
        // > 3 segments of 65,536 chars, with quotes, backslashes, non-ASCII and surrogate pairs — one straddling the
        // first segment boundary (its high surrogate is char 65,535).
        var sb = new StringBuilder();
        while (sb.Length < 65535) sb.Append("ab\"c\\dé");
        sb.Length = 65535;
        sb.Append("😀");
        while (sb.Length < 210_000) sb.Append("{\"hashes\":\"QUJD+/==\"} ✓ 😀 ");
        string value = sb.ToString();
        string p = PathOf("long.kde");
        SafeTensorsFile.Write(p, SampleTensors(), new Dictionary<string, string> { ["preprocessing"] = value, ["short"] = "x" });
        var c = SafeTensorsFile.Read(p);
        Assert.That(c.Metadata["preprocessing"], Is.EqualTo(value));
        Assert.That(c.Metadata["short"], Is.EqualTo("x"));
        byte[] file = File.ReadAllBytes(p);
        string json = Encoding.UTF8.GetString(file, 8, (int)BinaryPrimitives.ReadUInt64LittleEndian(file));
        string oneString = JsonSerializer.Serialize(value, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        Assert.That(json, Does.Contain("\"preprocessing\":" + oneString + ","));
    }

    [Test]
    public void Writing_is_deterministic_whatever_the_input_order()
    {
        var tensors = SampleTensors();
        var meta = new Dictionary<string, string> { ["b"] = "2", ["a"] = "1" };
        SafeTensorsFile.Write(PathOf("x"), tensors, meta);
        SafeTensorsFile.Write(PathOf("y"), tensors.Reverse(), new Dictionary<string, string> { ["a"] = "1", ["b"] = "2" });
        Assert.That(File.ReadAllBytes(PathOf("x")), Is.EqualTo(File.ReadAllBytes(PathOf("y"))));
    }

    [Test]
    public void Written_file_follows_the_public_layout_and_its_checksums_can_be_recomputed_independently()
    {
        string p = PathOf("m.safetensors");
        SafeTensorsFile.Write(p, SampleTensors(), new Dictionary<string, string> { ["k"] = "v" });
        byte[] file = File.ReadAllBytes(p);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        Assert.That((8 + (long)n) % 8, Is.EqualTo(0), "data section 8-byte aligned");
        string json = Encoding.UTF8.GetString(file, 8, (int)n);
        Assert.That(json, Does.StartWith("{\"__metadata__\":{"));
        using var doc = JsonDocument.Parse(json);
        var data = file.AsSpan(8 + (int)n).ToArray();

        var meta = doc.RootElement.GetProperty("__metadata__");
        Assert.That(meta.GetProperty("kdengine.sha256").GetString(), Is.EqualTo(Convert.ToHexStringLower(SHA256.HashData(data))));
        string headerSha = meta.GetProperty("kdengine.header_sha256").GetString()!;
        var zeroed = Encoding.Latin1.GetString(file, 0, 8 + (int)n).Replace(headerSha, new string('0', 64));
        Assert.That(Convert.ToHexStringLower(SHA256.HashData(Encoding.Latin1.GetBytes(zeroed))), Is.EqualTo(headerSha));

        var w = doc.RootElement.GetProperty("dnn.0.weight");
        Assert.That(w.GetProperty("dtype").GetString(), Is.EqualTo("F32"));
        Assert.That(w.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()), Is.EqualTo(new[] { 4, 3 }));
        var off = w.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var expected = SampleTensors().Single(t => t.Name == "dnn.0.weight");
        Assert.That(data[off[0]..off[1]], Is.EqualTo(BytesOf(expected)));
    }

    [Test]
    public void Reads_a_file_built_by_hand_like_pytorch_safetensors_writes_it()
    {
        // What safetensors.torch.save_file({"weight": torch.tensor([[1., 2.], [3., 4.]]), "bias": torch.tensor([0.5, -0.5])},
        // path, metadata={"format": "pt"}) produces: compact JSON, metadata first, tensors by name (same dtype),
        // header padded with spaces to a multiple of 8, then the little-endian data.
        const string header = "{\"__metadata__\":{\"format\":\"pt\"},"
            + "\"bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            + "\"weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]}}";
        byte[] file = HandBuilt(header, LittleEndianFloats(0.5f, -0.5f, 1f, 2f, 3f, 4f));
        string p = PathOf("torch.safetensors");
        File.WriteAllBytes(p, file);
        var c = SafeTensorsFile.Read(p);
        Assert.That(c.Names, Is.EqualTo(new[] { "bias", "weight" }));
        Assert.That(c.GetFloat32("weight", [2, 2]).ToArray(), Is.EqualTo(new[] { 1f, 2f, 3f, 4f }));
        Assert.That(c.GetFloat32("bias", [2]).ToArray(), Is.EqualTo(new[] { 0.5f, -0.5f }));
        Assert.That(c.Metadata, Is.EqualTo(new Dictionary<string, string> { ["format"] = "pt" }));

        // Unpadded headers, no metadata and tensors listed out of offset order are also valid safetensors.
        const string bare = "{\"weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]},\"bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        File.WriteAllBytes(p, HandBuilt(bare, LittleEndianFloats(0.5f, -0.5f, 1f, 2f, 3f, 4f), pad: false));
        Assert.That(SafeTensorsFile.Read(p).GetFloat32("weight").ToArray(), Is.EqualTo(new[] { 1f, 2f, 3f, 4f }));
    }

    [Test]
    public void Every_truncation_of_a_file_is_a_format_error()
    {
        string p = PathOf("full.kde");
        SafeTensorsFile.Write(p, SampleTensors().Take(3), new Dictionary<string, string> { ["m"] = "x" });
        byte[] full = File.ReadAllBytes(p);
        for (int len = 0; len < full.Length; len++)
        {
            var prefix = full[..len];
            Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Read(new MemoryStream(prefix), p), $"prefix of {len} bytes");
        }
        // And through the file path too, at a few lengths.
        foreach (int len in new[] { 0, 7, 8, 9, full.Length / 2, full.Length - 1 })
        {
            File.WriteAllBytes(p, full[..len]);
            Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Read(p), $"file prefix of {len} bytes");
        }
    }

    [Test]
    public void Every_single_bit_flip_of_a_checksummed_file_is_a_format_error()
    {
        string p = PathOf("flip.kde");
        SafeTensorsFile.Write(p, [NamedArray.Float32("w", [1f, 2f, 3f], 3), NamedArray.Int64("ids", [5L], 1)],
            new Dictionary<string, string> { ["model"] = "lr" });
        byte[] original = File.ReadAllBytes(p);
        int cases = 0;
        for (int bit = 0; bit < original.Length * 8; bit++)
        {
            var f = (byte[])original.Clone();
            f[bit / 8] ^= (byte)(1 << (bit % 8));
            try
            {
                SafeTensorsFile.Read(new MemoryStream(f), p);
                Assert.Fail($"flipping bit {bit % 8} of byte {bit / 8} went undetected");
            }
            catch (CheckpointFormatException) { cases++; }
        }
        Assert.That(cases, Is.EqualTo(original.Length * 8));
    }

    [Test]
    public void Bit_flips_of_a_plain_safetensors_file_never_raise_another_exception_type()
    {
        // Without KdEngine checksums a flip may yield a different but valid file; it must never crash differently.
        const string header = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}}";
        byte[] original = HandBuilt(header, new byte[16]);
        string p = PathOf("plain.safetensors");
        int rejected = 0;
        for (int bit = 0; bit < original.Length * 8; bit++)
        {
            var f = (byte[])original.Clone();
            f[bit / 8] ^= (byte)(1 << (bit % 8));
            try { SafeTensorsFile.Read(new MemoryStream(f), p); }
            catch (CheckpointFormatException) { rejected++; }
        }
        Assert.That(rejected, Is.GreaterThan(original.Length * 4), "most header flips are caught structurally");
    }

    [TestCase(ulong.MaxValue, "exceeds the limit")]
    [TestCase(0x8000_0000_0000_0000UL, "exceeds the limit")]
    [TestCase(100_000_001UL, "exceeds the limit")]
    [TestCase(1000UL, "exceeds the 20 bytes that follow it")]
    [TestCase(0UL, "too small")]
    [TestCase(1UL, "too small")]
    public void Header_length_out_of_range(ulong n, string message)
    {
        var file = new byte[28];
        BinaryPrimitives.WriteUInt64LittleEndian(file, n);
        Encoding.ASCII.GetBytes("{}                  ").CopyTo(file, 8);
        var ex = ReadFails(file);
        Assert.That(ex.Message, Does.Contain(message));
        Assert.That(ex.Message, Does.StartWith(PathOf("bad.safetensors") + ": "));
    }

    private static string Tensor(string name, string dtype, string shape, long begin, long end) =>
        $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}";

    [Test]
    public void Offsets_that_do_not_match_the_shape_name_the_tensor()
    {
        var ex = ReadFails(HandBuilt("{" + Tensor("dnn.0.weight", "F32", "[5,6]", 0, 100) + "}", new byte[100]), "model.kde");
        Assert.That(ex.Message, Is.EqualTo(PathOf("model.kde") + ": tensor 'dnn.0.weight' data_offsets [0, 100] do not match shape [5, 6] of F32 (120 bytes)."));
    }

    [Test]
    public void Overlapping_offsets()
    {
        var ex = ReadFails(HandBuilt("{" + Tensor("a", "F32", "[4]", 0, 16) + "," + Tensor("b", "F32", "[4]", 8, 24) + "}", new byte[24]));
        Assert.That(ex.Message, Does.Contain("tensor 'b' data_offsets [8, 24] overlap tensor 'a' [0, 16]"));
    }

    [Test]
    public void Hole_between_tensors_and_trailing_bytes()
    {
        var ex = ReadFails(HandBuilt("{" + Tensor("a", "F32", "[2]", 0, 8) + "," + Tensor("b", "F32", "[2]", 12, 20) + "}", new byte[20]));
        Assert.That(ex.Message, Does.Contain("bytes [8, 12) of the data section belong to no tensor (before tensor 'b')"));
        ex = ReadFails(HandBuilt("{" + Tensor("a", "F32", "[2]", 0, 8) + "}", new byte[12]));
        Assert.That(ex.Message, Does.Contain("the data section is 12 bytes but the tensors cover only the first 8"));
    }

    [Test]
    public void Offsets_outside_the_data_section_or_reversed()
    {
        var ex = ReadFails(HandBuilt("{" + Tensor("a", "F32", "[4]", 0, 16) + "}", new byte[8]));
        Assert.That(ex.Message, Does.Contain("tensor 'a' data_offsets [0, 16] lie outside the data section, which is 8 bytes"));
        ex = ReadFails(HandBuilt("{" + Tensor("a", "F32", "[0]", 8, 0) + "}", new byte[8]));
        Assert.That(ex.Message, Does.Contain("end before they begin"));
    }

    [Test]
    public void Duplicate_names_and_keys_are_detected()
    {
        var ex = ReadFails(HandBuilt("{" + Tensor("a", "F32", "[1]", 0, 4) + "," + Tensor("a", "F32", "[1]", 4, 8) + "}", new byte[8]));
        Assert.That(ex.Message, Does.Contain("tensor 'a' appears twice"));
        ex = ReadFails(HandBuilt("{\"__metadata__\":{\"x\":\"1\",\"x\":\"2\"}," + Tensor("a", "F32", "[1]", 0, 4) + "}", new byte[4]));
        Assert.That(ex.Message, Does.Contain("metadata key 'x' appears twice"));
        ex = ReadFails(HandBuilt("{\"__metadata__\":{},\"__metadata__\":{}}", []));
        Assert.That(ex.Message, Does.Contain("'__metadata__' appears twice"));
        ex = ReadFails(HandBuilt("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[4]));
        Assert.That(ex.Message, Does.Contain("tensor 'a' has key 'dtype' twice"));
        // A JSON escape spelling the same name is the same name.
        ex = ReadFails(HandBuilt("{" + Tensor("a", "F32", "[1]", 0, 4) + "," + Tensor("\\u0061", "F32", "[1]", 4, 8) + "}", new byte[8]));
        Assert.That(ex.Message, Does.Contain("tensor 'a' appears twice"));
    }

    [TestCase("F16")]
    [TestCase("bf16")]
    [TestCase("f32")]
    [TestCase("U8")]
    public void Unknown_dtype(string dtype)
    {
        var ex = ReadFails(HandBuilt("{" + Tensor("a", dtype, "[2]", 0, 4) + "}", new byte[4]));
        Assert.That(ex.Message, Does.Contain($"tensor 'a' has dtype '{dtype}'; supported dtypes are F32, F64, I32, I64, BF16, I8"));
    }

    [Test]
    public void Shape_product_overflow_and_bad_dimensions_fail_before_any_allocation()
    {
        var ex = ReadFails(HandBuilt("{" + Tensor("huge", "F32", "[2147483647,2147483647,2147483647]", 0, 4) + "}", new byte[4]));
        Assert.That(ex.Message, Does.Contain("tensor 'huge' shape [2147483647, 2147483647, 2147483647] has more elements than an array can hold"));
        // Wraps to 0 (and to a small number) in 64-bit arithmetic: must still be rejected.
        ex = ReadFails(HandBuilt("{" + Tensor("wrap", "F32", "[65536,65536,65536,65536]", 0, 0) + "}", []));
        Assert.That(ex.Message, Does.Contain("more elements than an array can hold"));
        ex = ReadFails(HandBuilt("{" + Tensor("big", "F32", "[4294967296]", 0, 4) + "}", new byte[4]));
        Assert.That(ex.Message, Does.Contain("dimension 0 is 4294967296"));
        ex = ReadFails(HandBuilt("{" + Tensor("neg", "F32", "[-1]", 0, 4) + "}", new byte[4]));
        Assert.That(ex.Message, Does.Contain("tensor 'neg' shape holds '-1', not a non-negative integer"));
        ex = ReadFails(HandBuilt("{" + Tensor("frac", "F32", "[1.5]", 0, 4) + "}", new byte[4]));
        Assert.That(ex.Message, Does.Contain("holds '1.5'"));
        ex = ReadFails(HandBuilt("{" + Tensor("str", "F32", "[\"2\"]", 0, 8) + "}", new byte[8]));
        Assert.That(ex.Message, Does.Contain("not a non-negative integer"));
        ex = ReadFails(HandBuilt("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", new byte[8]));
        Assert.That(ex.Message, Does.Contain("data_offsets must be [begin, end], not 3 numbers"));
    }

    [TestCase("[]", "not a JSON object")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", "not valid JSON")]
    [TestCase("{/*c*/\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "not valid JSON")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}x", "not valid JSON")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}{}", "not valid JSON")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", "unknown key 'extra'")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", "tensor 'a' lacks data_offsets")]
    [TestCase("{\"a\":[1]}", "tensor 'a' must be an object")]
    [TestCase("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", "dtype must be a string")]
    [TestCase("{\"__metadata__\":{\"n\":1},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "metadata 'n' must be a string")]
    [TestCase("{\"__metadata__\":null,\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "must be an object of strings")]
    [TestCase("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "empty name")]
    [TestCase("{\"a\":{\"dtype\":\"F32\",\"shape\":[[[[1]]]],\"data_offsets\":[0,4]}}", "not a non-negative integer")]
    public void Malformed_header_json(string json, string message)
    {
        var ex = ReadFails(HandBuilt(json, new byte[4]));
        Assert.That(ex.Message, Does.Contain(message));
    }

    [Test]
    public void Invalid_utf8_in_the_header()
    {
        var file = HandBuilt("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[4]);
        file[10] = 0xC3; // a lead byte followed by 'a' (not a continuation byte), inside the tensor name
        Assert.That(ReadFails(file).Message, Does.Contain("not valid UTF-8"));
    }

    [Test]
    public void KdEngine_metadata_must_be_complete_known_and_of_a_supported_version()
    {
        string p = PathOf("v.kde");
        SafeTensorsFile.Write(p, [NamedArray.Float32("w", [1f], 1)]);
        byte[] file = File.ReadAllBytes(p);
        string text = Encoding.Latin1.GetString(file);

        // Same-length edits keep the header length valid, so the metadata checks are what fire.
        byte[] Edit(string from, string to)
        {
            Assert.That(from.Length, Is.EqualTo(to.Length));
            Assert.That(text, Does.Contain(from));
            return Encoding.Latin1.GetBytes(text.Replace(from, to));
        }
        Assert.That(ReadFails(Edit("\"kdengine.format_version\":\"1\"", "\"kdengine.format_version\":\"2\"")).Message,
            Does.Contain("format version '2' is not supported (this build reads version 1)"));
        Assert.That(ReadFails(Edit("\"kdengine.format_version\"", "\"kdengine.format_versiom\"")).Message,
            Does.Contain("metadata key 'kdengine.format_versiom' is not one this build knows"));
        Assert.That(ReadFails(Edit("\"kdengine.sha256\"", "\"xdengine.sha256\"")).Message,
            Does.Contain("found 'kdengine.format_version', 'kdengine.header_sha256' only"));
    }

    [Test]
    public void Data_corruption_is_reported_as_a_checksum_mismatch()
    {
        string p = PathOf("c.kde");
        SafeTensorsFile.Write(p, [NamedArray.Float32("w", [1f, 2f], 2)]);
        byte[] file = File.ReadAllBytes(p);
        file[^1] ^= 0x40;
        Assert.That(ReadFails(file).Message, Does.Contain("data checksum mismatch"));
        file[^1] ^= 0x40; // restored: reads fine again
        File.WriteAllBytes(p, file);
        Assert.DoesNotThrow(() => SafeTensorsFile.Read(p));
    }

    [Test]
    public void Getters_name_the_missing_or_mismatched_tensor()
    {
        string p = PathOf("g.kde");
        SafeTensorsFile.Write(p, [NamedArray.Float32("dnn.0.weight", new float[6], 2, 3), NamedArray.Int64("ids", [1L], 1)]);
        var c = SafeTensorsFile.Read(p);
        var ex = Assert.Throws<CheckpointFormatException>(() => c.GetFloat32("dnn.1.weight"))!;
        Assert.That(ex.Message, Does.Contain("tensor 'dnn.1.weight' is missing (the file has 2 tensors: dnn.0.weight, ids)"));
        ex = Assert.Throws<CheckpointFormatException>(() => c.GetFloat32("dnn.0.weight", [3, 2]))!;
        Assert.That(ex.Message, Is.EqualTo(p + ": tensor 'dnn.0.weight' has shape [2, 3], expected [3, 2]."));
        ex = Assert.Throws<CheckpointFormatException>(() => c.GetFloat32("ids"))!;
        Assert.That(ex.Message, Does.Contain("tensor 'ids' is I64, expected F32"));
    }

    [Test]
    public void Header_only_read_describes_the_tensors()
    {
        string p = PathOf("h.kde");
        SafeTensorsFile.Write(p, SampleTensors(), new Dictionary<string, string> { ["model"] = "dnn" });
        var h = SafeTensorsFile.ReadHeaderOnly(p);
        Assert.That(h.Metadata["model"], Is.EqualTo("dnn"));
        Assert.That(h.TryGet("dnn.0.weight", out var e), Is.True);
        Assert.That(e.Shape, Is.EqualTo(new[] { 4, 3 }));
        Assert.That(e.DType, Is.EqualTo(TensorDType.F32));
        Assert.That(e.DataEnd - e.DataBegin, Is.EqualTo(48));
        Assert.That(h.DataOffset + h.DataLength, Is.EqualTo(new FileInfo(p).Length));
    }

    [Test]
    public void A_throwing_tensor_enumerator_leaves_the_previous_file_intact_and_no_temporary_file()
    {
        string p = PathOf("model.kde");
        SafeTensorsFile.Write(p, [NamedArray.Float32("w", [1f, 2f], 2)]);
        byte[] before = File.ReadAllBytes(p);

        IEnumerable<NamedArray> Failing()
        {
            yield return NamedArray.Float32("w", [9f, 9f], 2);
            throw new InvalidOperationException("simulated failure while producing tensors");
        }
        Assert.Throws<InvalidOperationException>(() => SafeTensorsFile.Write(p, Failing()));
        Assert.That(File.ReadAllBytes(p), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(_dir), Is.EqualTo(new[] { p }));
        Assert.That(SafeTensorsFile.Read(p).GetFloat32("w").ToArray(), Is.EqualTo(new[] { 1f, 2f }));
    }

    /// <summary>A stream that fails once a given number of bytes has gone through it (a full disk, a killed writer).</summary>
    private sealed class FailingStream(Stream inner, long failAfter) : Stream
    {
        private long _written;
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (_written + buffer.Length > failAfter)
            {
                inner.Write(buffer[..(int)(failAfter - _written)]);
                throw new IOException("simulated: no space left on device");
            }
            inner.Write(buffer);
            _written += buffer.Length;
        }
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Flush() => inner.Flush();
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _written; set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    [TestCase(0)]
    [TestCase(5)]
    [TestCase(200)]
    [TestCase(1000)]
    public void A_write_that_dies_midway_leaves_the_previous_file_intact_and_no_temporary_file(int failAfter)
    {
        string p = PathOf("model.kde");
        SafeTensorsFile.Write(p, [NamedArray.Float32("w", [1f, 2f], 2)]);
        byte[] before = File.ReadAllBytes(p);
        var big = NamedArray.Float32("w", new float[1000], 1000);
        Assert.Throws<IOException>(() => SafeTensorsFile.Write(p, [big], null, s => new FailingStream(s, failAfter)));
        Assert.That(File.ReadAllBytes(p), Is.EqualTo(before));
        Assert.That(Directory.GetFiles(_dir), Is.EqualTo(new[] { p }));
        // And a successful write then replaces it.
        SafeTensorsFile.Write(p, [big]);
        Assert.That(SafeTensorsFile.Read(p).GetFloat32("w", [1000]).Length, Is.EqualTo(1000));
        Assert.That(Directory.GetFiles(_dir), Is.EqualTo(new[] { p }));
    }

    [Test]
    public void Writer_rejects_bad_arguments()
    {
        string p = PathOf("a.kde");
        var ex = Assert.Throws<ArgumentException>(() => SafeTensorsFile.Write(p, [NamedArray.Float32("a", [1f], 1), NamedArray.Float32("a", [2f], 1)]))!;
        Assert.That(ex.Message, Does.Contain("tensor 'a' appears twice"));
        ex = Assert.Throws<ArgumentException>(() => SafeTensorsFile.Write(p, [NamedArray.Float32("__metadata__", [1f], 1)]))!;
        Assert.That(ex.Message, Does.Contain("reserved"));
        ex = Assert.Throws<ArgumentException>(() => SafeTensorsFile.Write(p, [], new Dictionary<string, string> { ["kdengine.sha256"] = "x" }))!;
        Assert.That(ex.Message, Does.Contain("reserved prefix"));
        ex = Assert.Throws<ArgumentException>(() => NamedArray.Float32("w", new float[5], 2, 3))!;
        Assert.That(ex.Message, Does.Contain("shape [2, 3] holds 6 elements but the data has 5"));
        Assert.Throws<ArgumentException>(() => NamedArray.Float32("w", [], -1));
        Assert.Throws<ArgumentException>(() => NamedArray.Float32("", [1f], 1));
        Assert.That(File.Exists(p), Is.False);
    }

    [Test]
    public void An_empty_checkpoint_round_trips()
    {
        string p = PathOf("empty.kde");
        SafeTensorsFile.Write(p, []);
        var c = SafeTensorsFile.Read(p);
        Assert.That(c.Names, Is.Empty);
        Assert.That(c.Metadata[SafeTensorsFile.FormatVersionKey], Is.EqualTo("1"));
    }
}
