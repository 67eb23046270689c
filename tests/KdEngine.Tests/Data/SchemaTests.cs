using KdEngine.Data;
using NUnit.Framework;

namespace KdEngine.Tests.Data;

public class SchemaTests
{
    [Test]
    public void Criteo_schema_has_label_13_bucketized_numeric_and_26_categorical_fields()
    {
        var s = Schema.Criteo();
        Assert.That(s.Count, Is.EqualTo(40));
        Assert.That(s.LabelIndex, Is.EqualTo(0));
        Assert.That(s.UserIdIndex, Is.EqualTo(-1));
        Assert.That(s.InputIndices, Has.Count.EqualTo(39));
        Assert.That(s[1], Is.EqualTo(FieldSpec.Numeric("I1")));
        Assert.That(s[13].Name, Is.EqualTo("I13"));
        Assert.That(s[14], Is.EqualTo(FieldSpec.Categorical("C1")));
        Assert.That(s[39].Name, Is.EqualTo("C26"));
        Assert.That(Schema.Criteo(Bucketing.Log2)[5].Bucketing, Is.EqualTo(Bucketing.Log2));
    }

    [Test]
    public void Json_round_trip_keeps_every_option()
    {
        var s = new Schema([
            FieldSpec.Label("y"),
            FieldSpec.Categorical("c") with { Privileged = true, MinCount = 3, HashBuckets = 50, ScaleByValue = true },
            FieldSpec.Numeric("n", Bucketing.Log2) with { MinCount = 2 },
            FieldSpec.DenseNumeric("d"),
            FieldSpec.Multi("m", ';', Pooling.Mean),
            FieldSpec.UserId("u"),
        ]);
        var back = Schema.FromJson(s.ToJson());
        Assert.That(back.Fields, Is.EqualTo(s.Fields));
        Assert.That(back.UserIdIndex, Is.EqualTo(5));
    }

    [Test]
    public void Unknown_kind_value_is_rejected_with_the_key_path()
    {
        const string json = """{"fields":[{"name":"y","kind":"label"},{"name":"a","kind":"categorical"},{"name":"b","kind":"numeric"},{"name":"c","kind":"categoric"}]}""";
        var e = Assert.Throws<DataFormatException>(() => Schema.FromJson(json))!;
        Assert.That(e.Message, Is.EqualTo("schema.json: fields[3].kind: unknown value 'categoric' (expected categorical|numeric|multi|label|userid)"));
        Assert.That(e.Key, Is.EqualTo("fields[3].kind"));
        Assert.That(e.File, Is.EqualTo("schema.json"));
    }

    [TestCase("""{"fields":[{"name":"y","kind":"label"},{"name":"a","kind":"categorical","pooled":"sum"}]}""", "fields[1].pooled", "unknown key")]
    [TestCase("""{"fields":[{"name":"y","kind":"label"}],"extra":1}""", "extra", "unknown key")]
    [TestCase("""{"fields":[{"name":"y","kind":"label"},{"name":"a","kind":"categorical","bucketing":"log2"}]}""", "fields[1].bucketing", "only valid for numeric")]
    [TestCase("""{"fields":[{"name":"y","kind":"label"},{"name":"a","kind":"numeric","bucketing":"log10"}]}""", "fields[1].bucketing", "unknown value 'log10'")]
    [TestCase("""{"fields":[{"name":"y","kind":"label"},{"name":"a","kind":"multi","separator":"||"}]}""", "fields[1].separator", "one character")]
    [TestCase("""{"fields":[{"name":"y","kind":"label"},{"name":"a","kind":"categorical","minCount":0}]}""", "fields[1].minCount", "out of range")]
    [TestCase("""{"fields":[{"name":"y","kind":"label"},{"name":"a","kind":"categorical","privileged":"yes"}]}""", "fields[1].privileged", "expected true or false")]
    [TestCase("""{"fields":[{"name":"y","kind":"label"},{"name":"a","kind":"categorical"},{"name":"a","kind":"numeric"}]}""", "fields[2].name", "duplicate field name 'a'")]
    [TestCase("""{"fields":[{"name":"a","kind":"categorical"}]}""", "fields", "no label field")]
    [TestCase("""{"fields":[{"name":"y","kind":"label"},{"name":"u","kind":"userid"}]}""", "fields", "no input field")]
    [TestCase("""{"fields":[{"name":"y","kind":"label"},{"kind":"categorical"}]}""", "fields[1].name", "missing required key")]
    [TestCase("""{"fields":[{"name":"y","kind":"label"},{"name":"a","kind":"categorical"}""", null, "invalid JSON")]
    public void Bad_schema_json_is_rejected_naming_the_key(string json, string? key, string problem)
    {
        var e = Assert.Throws<DataFormatException>(() => Schema.FromJson(json, "my.json"))!;
        Assert.That(e.Key, Is.EqualTo(key));
        Assert.That(e.Message, Does.StartWith("my.json: " + (key is null ? "" : key + ": ")));
        Assert.That(e.Message, Does.Contain(problem));
    }

    [Test]
    public void Schema_built_in_code_is_validated_too()
    {
        var e = Assert.Throws<DataFormatException>(() => new Schema([FieldSpec.Label(), FieldSpec.Categorical("c") with { Pooling = Pooling.Mean }]))!;
        Assert.That(e.Message, Does.Contain("fields[1].pooling").And.Contain("only valid for multi"));
        Assert.Throws<DataFormatException>(() => new Schema([FieldSpec.Label(), FieldSpec.Label("l2"), FieldSpec.Categorical("c")]));
    }
}
