using System.Text;
using CsCheck;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Tests.Data;
using NUnit.Framework;

namespace KdEngine.Tests.Hardening;

/// <summary>
/// Schema, preprocessor and model-config JSON on mutated and random documents: each parses or raises the library's
/// exception (<see cref="DataFormatException"/> naming the document and the key, or <see cref="ConfigException"/>
/// naming the document). The bytes are decoded as the file loaders do (UTF-8, invalid sequences replaced).
/// </summary>
[TestFixture]
public sealed class JsonFuzzTests
{
    private const int Iterations = 400;
    private const string JsonAlphabet = "{}[]\":,0123456789.-e truefalsnamekid";

    private static Gen<byte[]> MutatedOrRandom(string seed) =>
        Gen.Frequency((5, Fuzz.Mutated(Encoding.UTF8.GetBytes(seed))), (1, Fuzz.RandomText(JsonAlphabet, 3)));

    private static string? CheckDocumentError(DataFormatException e, string source)
    {
        if (e.File != source || !e.Message.StartsWith(source + ":", StringComparison.Ordinal))
            return $"DataFormatException does not name the document '{source}': {e.Message}";
        if (e.Key is null && !e.Problem.StartsWith("invalid JSON", StringComparison.Ordinal))
            return $"a document error names no key: {e.Message}";
        return null;
    }

    internal static string SchemaSeed() => File.ReadAllText(DataTestFiles.Fixture("avazu_schema.json"));

    internal static string PreprocessorSeed()
    {
        var schema = Schema.Load(DataTestFiles.Fixture("avazu_schema.json"));
        var rows = new DelimitedReader(DataTestFiles.Fixture("avazu_like.csv"), schema).ToList();
        return Preprocessor.Fit(schema, rows).ToJson();
    }

    internal static string ConfigSeed() => new ModelConfig { Model = ModelKind.XDeepFm, Dnn = [8, 4], Cin = [4, 2], Dropout = 0.1f }.ToJson();

    [Test]
    public void Schema_json()
    {
        var t = Fuzz.Run("schema JSON", MutatedOrRandom(SchemaSeed()), Iterations, 11_000,
            bytes => Schema.FromJson(Encoding.UTF8.GetString(bytes), "schema.json"),
            e => Fuzz.Expect<DataFormatException>(e, d => CheckDocumentError(d, "schema.json")));
        Assert.That(t.Parsed, Is.GreaterThan(0));
    }

    [Test]
    public void Preprocessor_json()
    {
        var t = Fuzz.Run("preprocessor JSON", MutatedOrRandom(PreprocessorSeed()), Iterations, 12_000,
            bytes =>
            {
                var pre = Preprocessor.FromJson(Encoding.UTF8.GetString(bytes), "preprocessor.json");
                // A loaded preprocessor must be usable: encode the fixture rows with it.
                var rows = new DelimitedReader(DataTestFiles.Fixture("avazu_like.csv"), pre.Schema).ToList();
                pre.EncodeAll(rows);
            },
            e => e is DataFormatException { File: "avazu_like.csv" } ? null // the mutated schema no longer fits the CSV
                : Fuzz.Expect<DataFormatException>(e, d => CheckDocumentError(d, "preprocessor.json")));
        Assert.That(t.Parsed, Is.GreaterThan(0));
    }

    [Test]
    public void Model_config_json()
    {
        var t = Fuzz.Run("model config JSON", MutatedOrRandom(ConfigSeed()), Iterations, 13_000,
            bytes =>
            {
                var config = ModelConfig.FromJson(Encoding.UTF8.GetString(bytes), "model.json");
                // A config that validates must build a model (small fields keep it cheap).
                if ((long)config.Dnn.Sum() + config.Cin.Sum() + config.EmbeddingDim < 20_000)
                    _ = new ZooModel(config, [new("a", 5), new("b", 7)]);
            },
            e => Fuzz.Expect<ConfigException>(e, c => c.Message.StartsWith("model.json: ", StringComparison.Ordinal) ? null
                : $"ConfigException does not name the document: {c.Message}"));
        Assert.That(t.Parsed, Is.GreaterThan(0));
    }

    [TestCase("\"lr, fm\"")]
    [TestCase("\"dnn \"")]
    [TestCase("7")]
    [TestCase("\"3\"")]
    [TestCase("\"xdeepfm,dcn\"")]
    public void Model_kind_must_be_one_exact_name(string value)
    {
        // System.Text.Json's enum converter accepts comma-separated flag combinations and numeric strings; a config
        // must name one model exactly (camelCase), or a typo silently trains another model.
        var e = Assert.Throws<ConfigException>(() => ModelConfig.FromJson($"{{\"model\": {value}}}", "model.json"))!;
        Assert.That(e.Message, Does.StartWith("model.json: ").And.Contain("model"));
    }

    [TestCase("dnnActivation", "\"relu, tanh\"")]
    [TestCase("cinActivation", "\"1\"")]
    public void Activation_must_be_one_exact_name(string key, string value)
    {
        var e = Assert.Throws<ConfigException>(() => ModelConfig.FromJson($"{{\"{key}\": {value}}}", "model.json"))!;
        Assert.That(e.Message, Does.StartWith("model.json: ").And.Contain(key));
    }

    [Test]
    public void Exact_enum_names_still_parse()
    {
        foreach (var kind in Enum.GetValues<ModelKind>())
        {
            string name = System.Text.Json.JsonNamingPolicy.CamelCase.ConvertName(kind.ToString());
            Assert.That(ModelConfig.FromJson($"{{\"model\": \"{name}\", \"dnnActivation\": \"tanh\"}}").Model, Is.EqualTo(kind));
            Assert.That(ModelConfig.FromJson($"{{\"model\": \"{name.ToUpperInvariant()}\"}}").Model, Is.EqualTo(kind), "names are case-insensitive");
        }
    }
}
