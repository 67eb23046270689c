using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using KdEngine.Models;

namespace KdEngine.Pipelines;

/// <summary>
/// The hyper-parameters a search tries: an ordered list of names, each with its candidate values (JSON values: numbers,
/// names, arrays such as <c>[400, 400]</c>). Names are the camelCase keys of <see cref="TrainingSettings"/> and
/// <see cref="ModelConfig"/> (for a distillation search: of <see cref="DistillConfig"/>, with model keys meaning the
/// student's), optionally prefixed <c>training.</c>, <c>model.</c>, <c>distill.</c>, <c>student.</c> or <c>teacher.</c>;
/// <c>lr</c> is short for <c>learningRate</c> and <c>T</c> for <c>temperature</c> (see <see cref="TrialConfig.With(string, JsonNode?)"/>).
/// </summary>
public sealed class SearchSpace
{
    private readonly List<(string Name, JsonNode?[] Values)> _parameters = [];

    /// <summary>The searched parameters in the order given, each with its candidate values.</summary>
    public IReadOnlyList<(string Name, JsonNode?[] Values)> Parameters => _parameters;

    /// <summary>
    /// The grid <c>tune</c> searches when none is given (docs/results.md, "Tuning"): logistic regression — FTRL's α and
    /// λ2; the other models — learning rate around the 1e-3 default, embedding weight decay and dropout (FM and LR have no
    /// DNN, so no dropout).
    /// </summary>
    public static SearchSpace DefaultFor(ModelKind kind)
    {
        if (kind == ModelKind.Lr)
            return new SearchSpace().AddSpec("ftrlAlpha=0.3|0.5|1|2").AddSpec("ftrlL2=0.00001|0.0001|0.0003|0.001");
        var space = new SearchSpace().AddSpec("lr=0.0003|0.001|0.003").AddSpec("weightDecayEmbedding=0|0.01|0.1");
        return kind == ModelKind.Fm ? space : space.AddSpec("dropout=0|0.2");
    }

    /// <summary>The grid <c>tune --method</c> searches when none is given: α and T for the KD losses, λ for Rocket Launching and PFD.</summary>
    public static SearchSpace DefaultForDistill(DistillMethod method) => method switch
    {
        DistillMethod.Rocket or DistillMethod.Pfd => new SearchSpace().AddSpec("lambda=0.01|0.1|0.5|1"),
        _ => new SearchSpace().AddSpec("alpha=0.3|0.5|0.9").AddSpec("T=1|2|4"),
    };

    /// <summary>Number of settings in the full grid.</summary>
    public long GridSize => _parameters.Aggregate(1L, (n, p) => checked(n * p.Values.Length));

    /// <summary>Adds a parameter (a TrainingSettings / ModelConfig / DistillConfig key, or an alias) with its candidate values; returns this space.</summary>
    public SearchSpace Add(string name, params JsonNode?[] values)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("search space: a parameter has no name.");
        if (values.Length == 0) throw new ArgumentException($"search space: parameter '{name}' has no values.");
        if (_parameters.Any(p => p.Name == name)) throw new ArgumentException($"search space: parameter '{name}' is given twice.");
        _parameters.Add((name, values));
        return this;
    }

    /// <summary>
    /// A space from JSON: <c>{"lr": [0.001, 0.003], "dnn": [[400, 400], [200, 200]], "optimizer": ["adam", "adagrad"]}</c>
    /// (every value a list of candidates); errors name the source and the key.
    /// </summary>
    public static SearchSpace FromJson(string json, string source = "space.json")
    {
        JsonNode? root;
        try { root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new ConfigException($"{source}: {ModelConfig.Describe(e)}", e); }
        if (root is not JsonObject obj) throw new ConfigException($"{source}: expected an object of parameter → list of values.");
        var space = new SearchSpace();
        foreach (var (name, value) in obj)
        {
            if (value is not JsonArray list || list.Count == 0)
                throw new ConfigException($"{source}: '{name}' must be a non-empty list of candidate values.");
            space.Add(name, list.Select(v => v?.DeepClone()).ToArray());
        }
        return space;
    }

    /// <summary>
    /// One parameter from the command line: <c>name=v1|v2|v3</c>, each value a JSON value (<c>0.001</c>, <c>adam</c>,
    /// <c>[400,400]</c>); a bare word is a string.
    /// </summary>
    public SearchSpace AddSpec(string spec)
    {
        int eq = spec.IndexOf('=');
        if (eq <= 0 || eq == spec.Length - 1) throw new ArgumentException($"search parameter '{spec}': expected name=value|value|… (e.g. lr=0.001|0.003).");
        var values = spec[(eq + 1)..].Split('|').Select(v => ParseValue(v.Trim(), spec)).ToArray();
        return Add(spec[..eq].Trim(), values);
    }

    private static JsonNode? ParseValue(string text, string spec)
    {
        if (text.Length == 0) throw new ArgumentException($"search parameter '{spec}': an empty value.");
        if (text[0] is '[' or '{' or '"' || text is "true" or "false" or "null"
            || double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out _))
        {
            try { return JsonNode.Parse(text); }
            catch (JsonException e) { throw new ArgumentException($"search parameter '{spec}': '{text}' is not a JSON value ({e.Message}).", e); }
        }
        return JsonValue.Create(text);
    }

    /// <summary>The full grid in order (the last parameter varies fastest).</summary>
    public IEnumerable<IReadOnlyList<(string Name, JsonNode? Value)>> Grid()
    {
        var index = new int[_parameters.Count];
        for (long k = 0; k < GridSize; k++)
        {
            yield return _parameters.Select((p, i) => (p.Name, p.Values[index[i]])).ToArray();
            for (int i = index.Length - 1; i >= 0; i--)
            {
                if (++index[i] < _parameters[i].Values.Length) break;
                index[i] = 0;
            }
        }
    }

    /// <summary>Distinct settings of the grid in a seeded random order (random search without repeats).</summary>
    public IEnumerable<IReadOnlyList<(string Name, JsonNode? Value)>> Random(int seed)
    {
        long size = GridSize;
        var rng = new Random(seed);
        if (size <= 1 << 20)
        {
            var order = Enumerable.Range(0, (int)size).ToArray();
            rng.Shuffle(order);
            var grid = Grid().ToArray();
            foreach (int k in order) yield return grid[k];
            yield break;
        }
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (true)
        {
            var setting = _parameters.Select(p => (p.Name, p.Values[rng.Next(p.Values.Length)])).ToArray();
            if (seen.Add(Describe(setting))) yield return setting;
        }
    }

    /// <summary><c>name=value, …</c> with compact JSON values.</summary>
    public static string Describe(IEnumerable<(string Name, JsonNode? Value)> setting) =>
        string.Join(", ", setting.Select(p => $"{p.Name}={Text(p.Value)}"));

    /// <summary>A value as compact JSON (strings without quotes).</summary>
    public static string Text(JsonNode? value) => value switch
    {
        null => "null",
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        _ => value.ToJsonString(),
    };
}

/// <summary>
/// Everything one trial trains with: the model (the student, in a distillation search), the training settings and, for
/// distillation, the method's config. <see cref="With(string, JsonNode?)"/> sets one parameter by name through the records' strict JSON, so
/// a misspelt name or a bad value is an error naming it.
/// </summary>
public sealed record TrialConfig(ModelConfig Model, TrainingSettings Training, DistillConfig? Distill = null)
{
    private static readonly Dictionary<string, string> Aliases = new(StringComparer.Ordinal)
    {
        ["lr"] = "learningRate",
        ["T"] = "temperature",
        ["dim"] = "embeddingDim",
    };

    /// <summary>This config with one parameter set (see <see cref="SearchSpace"/> for the names).</summary>
    public TrialConfig With(string name, JsonNode? value)
    {
        string scope = "", key = name;
        int dot = name.IndexOf('.');
        if (dot > 0 && name[..dot] is "training" or "model" or "distill" or "student" or "teacher")
        {
            scope = name[..dot];
            key = name[(dot + 1)..];
        }
        key = Aliases.GetValueOrDefault(key, key);
        bool inTraining = Has(Training, TrainingSettings.Json, key);
        bool inModel = Has(Model, ModelConfig.Json, key);
        bool inDistill = Distill is not null && Has(Distill, TrainingSettings.Json, key) && key is not ("student" or "teacher" or "teachers");
        if (key == "seed") throw new ConfigException($"search parameter '{name}': seeds are not searched; the final runs vary them.");
        switch (scope)
        {
            case "training" when inTraining: return this with { Training = Set(Training, TrainingSettings.Json, key, value, name) };
            case "model" or "student" when inModel:
                return Distill is null ? this with { Model = Set(Model, ModelConfig.Json, key, value, name) } : WithStudent(Set(Model, ModelConfig.Json, key, value, name));
            case "teacher" when Distill is not null && Has(Distill.Teacher, ModelConfig.Json, key):
                return this with { Distill = Distill with { Teacher = Set(Distill.Teacher, ModelConfig.Json, key, value, name) } };
            case "distill" when inDistill: return this with { Distill = Set(Distill!, TrainingSettings.Json, key, value, name) };
            case "":
                int hits = (inTraining ? 1 : 0) + (inModel ? 1 : 0) + (inDistill ? 1 : 0);
                if (hits > 1) throw new ConfigException($"search parameter '{name}' is ambiguous; prefix it with training., model. or distill.");
                if (inTraining) return With("training." + key, value);
                if (inModel) return With("model." + key, value);
                if (inDistill) return With("distill." + key, value);
                break;
        }
        throw new ConfigException($"search parameter '{name}' is not a {(Distill is null ? "training or model" : "training, student or distillation")} setting; known: " +
            string.Join(", ", Keys(Training, TrainingSettings.Json).Concat(Keys(Model, ModelConfig.Json))
                .Concat(Distill is null ? [] : Keys(Distill, TrainingSettings.Json).Where(k => k is not ("student" or "teacher" or "teachers")))
                .Where(k => k != "seed").Distinct().Order(StringComparer.Ordinal)) + " (lr = learningRate, T = temperature, dim = embeddingDim).");
    }

    /// <summary>The config with every parameter of <paramref name="setting"/> set, in order.</summary>
    public TrialConfig With(IEnumerable<(string Name, JsonNode? Value)> setting) =>
        setting.Aggregate(this, (c, p) => c.With(p.Name, p.Value));

    /// <summary>The model seed, the shuffling seed and the distillation seeds set to <paramref name="seed"/> (as the CLI's --seed does).</summary>
    public TrialConfig WithSeed(int seed) => this with
    {
        Model = Model with { Seed = seed },
        Training = Training with { Seed = seed },
        Distill = Distill is null ? null : Distill with
        {
            Seed = seed,
            Student = Distill.Student with { Seed = seed },
            Teacher = Distill.Teacher with { Seed = seed + 1000 },
            Teachers = Distill.Teachers.Select((t, i) => t with { Seed = seed + 1001 + i }).ToArray(),
        },
    };

    private TrialConfig WithStudent(ModelConfig student) => this with { Model = student, Distill = Distill! with { Student = student } };

    private static bool Has<T>(T record, JsonSerializerOptions options, string key) =>
        JsonSerializer.SerializeToNode(record, options) is JsonObject o && o.ContainsKey(key);

    private static IEnumerable<string> Keys<T>(T record, JsonSerializerOptions options) =>
        JsonSerializer.SerializeToNode(record, options) is JsonObject o ? o.Select(kv => kv.Key) : [];

    private static T Set<T>(T record, JsonSerializerOptions options, string key, JsonNode? value, string name) where T : class
    {
        var node = (JsonObject)JsonSerializer.SerializeToNode(record, options)!;
        node[key] = value?.DeepClone();
        T? result;
        try { result = node.Deserialize<T>(options); }
        catch (JsonException e) { throw new ConfigException($"search parameter '{name}' = {SearchSpace.Text(value)}: {ModelConfig.Describe(e)}", e); }
        if (result is null) throw new ConfigException($"search parameter '{name}': the config became null.");
        switch (result)
        {
            case ModelConfig m: m.Validate($"search parameter '{name}'"); break;
            case TrainingSettings t: t.Validate($"search parameter '{name}'"); break;
            case DistillConfig d: d.Validate($"search parameter '{name}'"); break;
        }
        return result;
    }
}
