using System.Globalization;
using System.Text.RegularExpressions;
using KdEngine.Cli;
using KdEngine.Data;
using NUnit.Framework;

namespace KdEngine.Tests.Cli;

/// <summary>The kdengine verbs end to end, in-process through <see cref="CliApp.Run"/>, on tiny files written here.</summary>
[TestFixture]
[NonParallelizable]
public class CliTests
{
    private string _dir = "";
    private string _criteo = "", _criteoTest = "", _small = "";
    private string _synth = "", _synthSchema = "", _kd = "", _teacherCfg = "", _dcnCfg = "";
    private string _teacher = "", _teacher2 = "";

    [OneTimeSetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-cli-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
        // 300 rows sliced from the bundled Criteo sample; the sequential 8:1:1 test part is its last 30 rows.
        var lines = File.ReadLines(DataPaths.FindCriteoSample()).Take(301).ToArray();
        _criteo = Write("criteo300.csv", string.Join("\n", lines) + "\n");
        _criteoTest = Write("criteo300_test.csv", string.Join("\n", lines.Take(1).Concat(lines.Skip(271))) + "\n");
        _small = Write("small.json", """{"model": "dnn", "embeddingDim": 4, "dnn": [16]}""");
        _teacherCfg = Write("teacher.json", """{"model": "xDeepFm", "embeddingDim": 4, "dnn": [8], "cin": [4]}""");
        _dcnCfg = Write("dcn.json", """{"model": "dcn", "embeddingDim": 4, "dnn": [8], "crossLayers": 1}""");
        _kd = Write("kd.json", """
            {
              "student": {"model": "dnn", "embeddingDim": 4, "dnn": [8]},
              "teacher": {"model": "xDeepFm", "embeddingDim": 4, "dnn": [8], "cin": [4]},
              "teachers": [{"model": "xDeepFm", "embeddingDim": 4, "dnn": [8], "cin": [4]}, {"model": "dcn", "embeddingDim": 4, "dnn": [8], "crossLayers": 1}],
              "alpha": 0.5, "temperature": 2, "lambda": 0.5, "warmupSteps": 2
            }
            """);
        _synth = Path.Combine(_dir, "synth.tsv");
        Ok("synth", "--rows", "400", "--fields", "4", "--privileged", "1", "--vocab", "20", "--seed", "3", "--out", _synth);
        _synthSchema = _synth + ".schema.json";
        _teacher = Path.Combine(_dir, "teacher.kde");
        Ok("train", "--config", _teacherCfg, "--data", _synth, "--schema", _synthSchema, "--epochs", "2", "--min-count", "1", "--out", _teacher);
        _teacher2 = Path.Combine(_dir, "teacher2.kde");
        Ok("train", "--config", _dcnCfg, "--data", _synth, "--schema", _synthSchema, "--epochs", "2", "--min-count", "1", "--out", _teacher2);
    }

    [OneTimeTearDown]
    public void TearDown()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string Write(string name, string content)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, content);
        return path;
    }

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    private static string Ok(params string[] args)
    {
        var (code, o, e) = Run(args);
        Assert.That(code, Is.EqualTo(0), $"kdengine {string.Join(' ', args)} failed:\n{e}\n{o}");
        return o;
    }

    private static string Fails(params string[] args)
    {
        var (code, o, e) = Run(args);
        Assert.That(code, Is.EqualTo(1), $"kdengine {string.Join(' ', args)} should fail; stdout:\n{o}");
        Assert.That(e, Does.StartWith("error: "));
        Assert.That(e.TrimEnd().Split('\n'), Has.Length.EqualTo(1), "one line, no stack trace: " + e);
        Assert.That(e, Does.Not.Contain(" at KdEngine"));
        return e;
    }

    private static double Number(string text, string pattern)
    {
        var m = Regex.Match(text, pattern);
        Assert.That(m.Success, $"'{pattern}' not found in:\n{text}");
        return double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    [Test]
    public void EveryVerbHasHelp()
    {
        foreach (var verb in new[] { "train", "eval", "predict", "serve", "quantize", "synth", "cache-logits", "distill", "tune", "quickstart", "experiment", "experiment zoo", "experiment kd", "demo" })
        {
            var o = Ok([.. verb.Split(' '), "--help"]);
            Assert.That(o, Does.Contain("Usage:").And.Contain("kdengine " + verb + " ["), verb);
            // --help prints help and does nothing else (demo would print its losses).
            Assert.That(o, Does.Not.Contain("epoch   1"), verb);
        }
        var overview = Ok("--help");
        foreach (var verb in new[] { "train", "eval", "predict", "serve", "quantize", "synth", "cache-logits", "distill", "tune", "quickstart", "experiment", "demo" })
            Assert.That(overview, Does.Contain("  " + verb + " "), verb);
        Assert.That(Ok("help", "train"), Is.EqualTo(Ok("train", "--help")));
        Assert.That(Ok("train", "-h"), Is.EqualTo(Ok("train", "--help")));
    }

    [Test]
    public void HelpShowsTheDefaultsTheCodeUses()
    {
        // The defaults in help are the records' defaults, not text of their own.
        var defaults = new KdEngine.Pipelines.TrainingSettings();
        var train = Ok("train", "--help");
        Assert.That(train, Does.Match($@"--epochs <N>\s+maximum epochs.*\[default: {defaults.Epochs}\]"));
        Assert.That(train, Does.Match($@"--patience <N>.*\[default: {defaults.Patience}\]"));
        Assert.That(train, Does.Match($@"--batch-size <N>.*\[default: {defaults.BatchSize}\]"));
        Assert.That(train, Does.Match($@"--guard-se <K>.*\[default: {defaults.GuardStandardErrors}\]"));
        var quick = Ok("quickstart", "--help");
        Assert.That(quick, Does.Match($@"--epochs <N>.*patience {defaults.Patience},.*\[default: {defaults.Epochs}\]"));
        var kd = new KdEngine.Pipelines.DistillConfig();
        Assert.That(quick, Does.Match($@"--alpha <X>.*\[default: {kd.Alpha.ToString(CultureInfo.InvariantCulture)}\]"));
        Assert.That(quick, Does.Match($@"--temperature <T>.*\[default: {kd.Temperature.ToString(CultureInfo.InvariantCulture)}\]"));
        var synth = new SyntheticCtrOptions();
        Assert.That(Ok("synth", "--help"), Does.Match($@"--vocab <V>.*\[default: {synth.VocabSize}\]").And.Match(@"--zipf <S>.*\[default: 1\.1\]"));
    }

    /// <summary>LIBFFM's / ML.NET's FFM training from the command line: Adagrad's accumulators starting at 1, a fixed number of
    /// epochs with the last one kept; the settings line says so, and misuse is one line naming the option or key.</summary>
    [Test]
    public void AdagradInitialAccumulatorAndRestoringTheLastPoint()
    {
        string model = Path.Combine(_dir, "ffm-mlnet.kde");
        var train = Ok("train", "--model", "ffm", "--data", _criteo, "--optimizer", "adagrad", "--lr", "0.1", "--adagrad-initial-accumulator", "1",
            "--batch-size", "1", "--epochs", "2", "--patience", "0", "--plateau-factor", "1", "--restore-by", "last",
            "--wide-lr", "0.016", "--wide-adagrad-initial-accumulator", "39", "--l2-wide", "0.0039", "--out", model);
        Assert.That(train, Does.Contain("adagrad lr 0.1 initial accumulator 1").And.Contain("restoring the last point")
            .And.Contain("wide part lr 0.016").And.Contain("wide part initial accumulator 39").And.Contain("L2 wide 0.0039"));
        Assert.That(Fails("train", "--model", "ffm", "--data", _criteo, "--adagrad-initial-accumulator", "-1", "--out", model),
            Does.Contain("'--adagrad-initial-accumulator'"));
        Assert.That(Fails("train", "--model", "ffm", "--data", _criteo, "--optimizer", "adam", "--adagrad-initial-accumulator", "1", "--out", model),
            Does.Contain("adagradInitialAccumulator").And.Contain("adam"));
    }

    [Test]
    public void BadValuesAreNamedAtParseTime()
    {
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--epochs", "x", "--out", "x.kde"), Does.Contain("'--epochs'").And.Contain("'x'"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--epochs", "0", "--out", "x.kde"), Does.Contain("'--epochs'").And.Contain("out of range"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--lr", "-1", "--out", "x.kde"), Does.Contain("'--lr'").And.Contain("> 0"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--guard-se", "-1", "--out", "x.kde"), Does.Contain("'--guard-se'").And.Contain("≥ 0"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--optimizer", "adamw", "--out", "x.kde"), Does.Contain("'--optimizer'").And.Contain("adamw"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--split", "8:1", "--out", "x.kde"), Does.Contain("'--split'"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--format", "orc", "--out", "x.kde"), Does.Contain("'--format'").And.Contain("orc"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--ranges", "@" + Path.Combine(_dir, "none.txt"), "--out", "x.kde"), Does.Contain("none.txt"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--epochs", "2", "--epochs", "3", "--out", "x.kde"), Does.Contain("--epochs"));
        Assert.That(Fails("distill", "--method", "magic", "--data", _criteo, "--out", "x.kde"), Does.Contain("'--method'").And.Contain("magic"));
        Assert.That(Fails("train", "stray", "--model", "dnn"), Does.Contain("'stray'"));
        Assert.That(Fails("experiment"), Does.Contain("zoo|kd"));
        Assert.That(Fails("experiment", "zo"), Does.Contain("'zo'"));
    }

    [Test]
    public void ResponseFilesHoldArguments()
    {
        // @FILE anywhere but after --ranges is a response file: its lines are arguments.
        var rsp = Write("eval.rsp", $"--model {Path.Combine(_dir, "nope.kde")}\n# a comment\n--data {_criteo}\n");
        Assert.That(Fails("eval", "@" + rsp), Does.Contain("nope.kde"));
    }

    [Test]
    public void QuantizeWritesAServingCheckpointAndMeasuresItsAuc()
    {
        var model = Path.Combine(_dir, "criteo-q.kde");
        Ok("train", "--model", "dnn", "--config", _small, "--data", _criteo, "--epochs", "2", "--out", model);
        var int8 = Path.Combine(_dir, "criteo-q.int8.kde");
        var o = Ok("quantize", "--model", model, "--precision", "int8", "--data", _criteo, "--out", int8);
        Assert.That(o, Does.Contain($"wrote {int8}: int8").And.Contain("300 rows"));
        double fp32Auc = Number(o, @"fp32: AUC ([0-9.]+)"), int8Auc = Number(o, @"int8: AUC ([0-9.]+)");
        Assert.That(Math.Abs(int8Auc - fp32Auc), Is.LessThan(0.01));
        var served = KdEngine.Serving.Predictor.Load(int8);
        Assert.That(served.Precision, Is.EqualTo(KdEngine.Serving.ServingPrecision.Int8));
        Assert.That(Ok("eval", "--model", int8, "--data", _criteoTest), Does.Contain(": 30 rows"), "eval runs the dequantised model");
        Assert.That(Fails("quantize", "--model", int8, "--out", Path.Combine(_dir, "again.kde")), Does.Contain("already stored in int8"));
        Assert.That(Fails("quantize", "--model", model, "--precision", "int4", "--out", Path.Combine(_dir, "x.kde")), Does.Contain("--precision").And.Contain("int4"));
    }

    [Test]
    public void CriteoTrainEvalPredict_EvalReproducesTheTestAucTrainReported()
    {
        var model = Path.Combine(_dir, "criteo.kde");
        var train = Ok("train", "--model", "dnn", "--config", _small, "--data", _criteo, "--epochs", "2", "--guard-se", "1.5", "--out", model);
        Assert.That(train, Does.Contain("(criteo)").And.Contain("train 240 / validation 30 / test 30"));
        Assert.That(train, Does.Contain("within 0.5% of the lowest logloss, 1.5 SE above its AUC"), "--guard-se reaches the restore rule");
        double trainTestAuc = Number(train, @"\ntest AUC ([0-9.]+)");
        double trainTestLoss = Number(train, @"\ntest AUC [0-9.]+  logloss ([0-9.]+)");

        // The test part alone, evaluated from the checkpoint with its saved preprocessing: exactly the same numbers.
        var eval = Ok("eval", "--model", model, "--data", _criteoTest);
        Assert.That(eval, Does.Contain(": 30 rows"));
        Assert.That(Number(eval, @"AUC ([0-9.]+)"), Is.EqualTo(trainTestAuc));
        Assert.That(Number(eval, @"logloss ([0-9.]+)"), Is.EqualTo(trainTestLoss));

        var scores = Path.Combine(_dir, "criteo_scores.csv");
        Ok("predict", "--model", model, "--data", _criteo, "--out", scores);
        var rows = File.ReadAllLines(scores);
        Assert.That(rows[0], Is.EqualTo("probability"));
        Assert.That(rows, Has.Length.EqualTo(301));
        Assert.That(rows.Skip(1).Select(r => double.Parse(r, CultureInfo.InvariantCulture)), Is.All.InRange(0.0, 1.0));
    }

    [Test]
    public void TrainWithCalibration_EvalReportsEceAndTheCalibratedLogloss_LrTrainsWithFtrl()
    {
        // The whole sample (a 30-row validation part is too small to fit a calibration); its sequential test part is the last 1,000 rows.
        var all = File.ReadAllLines(DataPaths.FindCriteoSample());
        var fullTest = Write("criteo_full_test.csv", string.Join("\n", all.Take(1).Concat(all.TakeLast(1000))) + "\n");
        var model = Path.Combine(_dir, "criteo-cal.kde");
        var train = Ok("train", "--model", "dnn", "--config", _small, "--data", DataPaths.FindCriteoSample(), "--epochs", "2", "--metric", "both",
            "--calibration", "platt", "--out", model);
        Assert.That(train, Does.Contain("training: adam lr 0.001").And.Contain("restoring the best AUC within 0.5% of the lowest logloss"));
        Assert.That(train, Does.Match(@"stopped: (no improvement|reached the maximum of 2 epochs).*restored"));
        Assert.That(train, Does.Contain("calibration: platt a = "));
        double calibrated = Number(train, @"test logloss [0-9.]+ → ([0-9.]+)");
        var eval = Ok("eval", "--model", model, "--data", fullTest, "--bins", "3");
        Assert.That(eval, Does.Contain("calibration: platt a = "));
        Assert.That(Number(eval, @"logloss ([0-9.]+)"), Is.EqualTo(calibrated).Within(1e-6), "eval serves the saved calibration");
        Assert.That(eval, Does.Match(@"ECE [0-9.]+  MCE [0-9.]+  \(\d equal-mass bins\)"));
        Assert.That(eval, Does.Contain("mean prediction  click rate"));

        var lr = Ok("train", "--model", "lr", "--data", _criteo, "--epochs", "2", "--out", Path.Combine(_dir, "lr.kde"));
        Assert.That(lr, Does.Contain("training: ftrl α"));
        Assert.That(Ok("train", "--model", "lr", "--optimizer", "adam", "--data", _criteo, "--epochs", "1", "--out", Path.Combine(_dir, "lr2.kde")),
            Does.Contain("training: adam lr"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--metric", "mse", "--out", "x.kde"), Does.Contain("'--metric'").And.Contain("mse"));
        // kd names the distillation term: a plain model has none, so train refuses it before training rather than after an epoch.
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--metric", "kd", "--out", "x.kde"), Does.Contain("train: --metric kd"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--restore-by", "kd", "--out", "x.kde"), Does.Contain("only 'kdengine distill'"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--calibration", "isotonic", "--out", "x.kde"), Does.Contain("'--calibration'"));
    }

    [Test]
    public void WideFirst_fits_the_wide_part_first_and_is_refused_or_skipped_where_it_cannot_apply()
    {
        var wdl = Ok("train", "--model", "wdl", "--data", _criteo, "--epochs", "2", "--wide-first", "on", "--out", Path.Combine(_dir, "wdl-wf.kde"));
        Assert.That(wdl, Does.Contain("wide part fitted first").And.Contain("wide part first: logistic regression on the same features")
            .And.Contain("joint training from the fitted wide part").And.Contain("step       0  epoch 0"));
        var joint = Ok("train", "--model", "wdl", "--data", _criteo, "--epochs", "1", "--wide-first", "off", "--out", Path.Combine(_dir, "wdl-joint.kde"));
        Assert.That(joint, Does.Not.Contain("wide part first").And.Not.Contain("wide part fitted first"));
        Assert.That(Ok("train", "--model", "wdl", "--data", _criteo, "--epochs", "1", "--out", Path.Combine(_dir, "wdl-default.kde")),
            Does.Contain("wide part first: logistic regression"), "on by default for wdl");
        Assert.That(Fails("train", "--model", "lr", "--data", _criteo, "--wide-first", "on", "--out", Path.Combine(_dir, "x.kde")),
            Does.Contain("wideFirst").And.Contain("lr has nothing beside its wide part"));
        Assert.That(Ok("train", "--model", "dnn", "--data", _criteo, "--epochs", "1", "--out", Path.Combine(_dir, "dnn-default.kde")),
            Does.Contain("wide part first: logistic regression").And.Contain("written into the DNN"), "on by default for dnn");
        string tanh = Path.Combine(_dir, "dnn-tanh.json");
        File.WriteAllText(tanh, """{"model": "dnn", "dnnActivation": "tanh"}""");
        Assert.That(Ok("train", "--config", tanh, "--data", _criteo, "--epochs", "1", "--out", Path.Combine(_dir, "dnn-tanh-default.kde")),
            Does.Contain("wide part first: not applied").And.Contain("dnnActivation is tanh"), "a default that cannot apply does not fail the run");
        Assert.That(Ok("train", "--config", tanh, "--data", _criteo, "--epochs", "1", "--wide-first", "off", "--out", Path.Combine(_dir, "dnn-tanh.kde")),
            Does.Not.Contain("wide part first"));
        Assert.That(Fails("train", "--model", "wdl", "--data", _criteo, "--wide-first", "maybe", "--out", "x.kde"), Does.Contain("'--wide-first'").And.Contain("maybe"));
    }

    [Test]
    public void TuneSearchesOnValidationThenReportsTestOnce()
    {
        var outDir = Path.Combine(_dir, "tune");
        var best = Path.Combine(_dir, "tuned.kde");
        var o = Ok("tune", "--model", "dnn", "--config", _small, "--data", _criteo, "--param", "lr=0.003|0.01", "--param", "dropout=0|0.2",
            "--epochs", "2", "--seeds", "2", "--out-dir", outDir, "--out", best);
        Assert.That(o, Does.Contain("tune: grid search over 2 parameters (4 settings)"));
        Assert.That(Regex.Matches(o, @"trial +\d+: AUC").Count, Is.EqualTo(4));
        Assert.That(o, Does.Contain("rank  trial  valid AUC"));
        Assert.That(o, Does.Match(@"tune: test \(read once\) over 2 seeds: AUC [0-9.]+ ± [0-9.]+"));
        Assert.That(o, Does.Contain("tune: 4 run(s) reused a wide-first stage"), "trials 2–4 and the seed-1 final run share trial 1's logistic regression");
        Assert.That(File.ReadAllLines(Path.Combine(outDir, "trials.csv")), Has.Length.EqualTo(5));
        Assert.That(File.Exists(Path.Combine(outDir, "final.json")), Is.True);
        Assert.That(Ok("eval", "--model", best, "--data", _criteoTest), Does.Contain(": 30 rows"));
        // The default grid for a model, a budget of trials, random order.
        var r = Ok("tune", "--model", "lr", "--data", _criteo, "--search", "random", "--trials", "2", "--epochs", "1", "--seeds", "1", "--out-dir", outDir);
        Assert.That(r, Does.Contain("search: ftrlAlpha ∈ {0.3, 0.5, 1, 2}, ftrlL2 ∈").And.Contain("at most 2 trials"));
        Assert.That(Fails("tune", "--model", "dnn", "--data", _criteo, "--param", "learningrat=0.1", "--out-dir", outDir), Does.Contain("'learningrat'"));
    }

    [Test]
    public void TuneStreamsInputSetsAndMatchesTheSameRowsCutFromOneFile()
    {
        // The 300-row file's sequential 8:1:1 parts written as three files: the same rows in the same order, so the
        // streamed search over --train/--valid/--test must report exactly what the search over --data did.
        var lines = File.ReadAllLines(_criteo);
        string Part(string name, int skip, int take) => Write(name, string.Join("\n", lines.Take(1).Concat(lines.Skip(1 + skip).Take(take))) + "\n");
        string train = Part("tune-train.csv", 0, 240), valid = Part("tune-valid.csv", 240, 30), test = Part("tune-test.csv", 270, 30);
        string[] common = ["--model", "lr", "--param", "ftrlAlpha=0.3|1", "--epochs", "2", "--seeds", "2"];
        string TestLine(string output) => output.Split('\n').Single(l => l.StartsWith("tune: test (read once)", StringComparison.Ordinal));
        var fromFile = Ok(["tune", .. common, "--data", _criteo, "--out-dir", Path.Combine(_dir, "tune-file")]);
        var fromSets = Ok(["tune", .. common, "--train", train, "--valid", valid, "--test", test, "--shuffle-buffer", "1000", "--out-dir", Path.Combine(_dir, "tune-sets")]);
        Assert.That(fromSets, Does.Contain("240 train / 30 validation rows"));
        Assert.That(TestLine(fromSets), Is.EqualTo(TestLine(fromFile)));
        // A random split still searches in memory and gives a result; input sets need a test part, and are not for --method.
        Assert.That(Ok(["tune", .. common, "--data", _criteo, "--split-mode", "random", "--out-dir", Path.Combine(_dir, "tune-random")]), Does.Contain("tune: test (read once)"));
        Assert.That(Fails(["tune", .. common, "--train", train, "--valid", valid, "--out-dir", Path.Combine(_dir, "tune-x")]), Does.Contain("--test"));
    }

    [Test]
    public void DeviceOptionTrainsOnTheIlgpuCpuAcceleratorAndMatchesTheCpuRun()
    {
        // The same tiny FM run on the CPU backend and on ILGPU's CPU accelerator (the simulator CI has): the device
        // run must report the device and land on the same validation AUC to 3 decimals.
        var svm = Path.Combine(_dir, "dev.svm");
        Ok("synth", "--rows", "200", "--fields", "3", "--vocab", "10", "--format", "libsvm", "--seed", "6", "--out", svm);
        string[] Train(string device, string output) =>
            ["train", "--model", "fm", "--config", _small, "--data", svm, "--ranges", "@" + svm + ".ranges.txt", "--epochs", "1",
             "--min-count", "1", "--device", device, "--out", Path.Combine(_dir, output)];
        var cpu = Ok(Train("cpu", "cpu.kde"));
        var device = Ok(Train("ilgpu-cpu", "dev.kde"));
        Assert.That(device, Does.Contain("device: "));
        double Auc(string text) => Number(text, @"validation AUC ([0-9.]+)");
        Assert.That(Auc(device), Is.EqualTo(Auc(cpu)).Within(1e-3));
        Assert.That(Fails("train", "--device", "tpu"), Does.Contain("'tpu'"));
    }

    [Test]
    public void LibSvmFileEndToEnd()
    {
        var svm = Path.Combine(_dir, "synth.svm");
        Ok("synth", "--rows", "300", "--fields", "3", "--vocab", "15", "--format", "libsvm", "--seed", "5", "--out", svm);
        var model = Path.Combine(_dir, "svm.kde");
        var train = Ok("train", "--model", "fm", "--config", _small, "--data", svm, "--ranges", "@" + svm + ".ranges.txt", "--epochs", "2", "--min-count", "1", "--out", model);
        Assert.That(train, Does.Contain("(libsvm)"));
        // eval/predict read the file with the ranges saved in the checkpoint.
        Assert.That(Ok("eval", "--model", model, "--data", svm), Does.Contain(": 300 rows"));
        var scores = Path.Combine(_dir, "svm_scores.csv");
        Ok("predict", "--model", model, "--data", svm, "--out", scores);
        Assert.That(File.ReadAllLines(scores), Has.Length.EqualTo(301));
    }

    [Test]
    public void GenericCsvWithSchemaEndToEnd()
    {
        var rng = new Random(4);
        var lines = new List<string> { "id,site,click,device,hour" };
        for (int i = 0; i < 200; i++)
        {
            int site = rng.Next(6), device = rng.Next(3);
            int click = rng.NextDouble() < (site < 2 ? 0.7 : 0.15) ? 1 : 0;
            lines.Add($"{i},s{site},{click},d{device},{rng.Next(24)}");
        }
        var csv = Write("generic.csv", string.Join("\n", lines) + "\n");
        var schema = Write("generic.schema.json", """
            {"fields": [{"name": "click", "kind": "label"}, {"name": "site", "kind": "categorical"},
                        {"name": "device", "kind": "categorical"}, {"name": "hour", "kind": "numeric", "bucketing": "log2"}]}
            """);
        var model = Path.Combine(_dir, "generic.kde");
        var train = Ok("train", "--model", "lr", "--data", csv, "--schema", schema, "--epochs", "3", "--lr", "0.05", "--out", model);
        Assert.That(train, Does.Contain("(csv)"));
        Assert.That(train, Does.Contain("3 fields"));
        Assert.That(Ok("eval", "--model", model, "--data", csv), Does.Contain(": 200 rows"));
        var scores = Path.Combine(_dir, "generic_scores.csv");
        Ok("predict", "--model", model, "--data", csv, "--out", scores);
        Assert.That(File.ReadAllLines(scores), Has.Length.EqualTo(201));
    }

    [Test]
    public void BadInputIsOneLineAndExitCodeOne()
    {
        Assert.That(Fails("train", "--model", "dnn", "--data", Path.Combine(_dir, "nope.csv"), "--out", Path.Combine(_dir, "x.kde")), Does.Contain("nope.csv"));
        Assert.That(Fails("frobnicate"), Does.Contain("unknown command 'frobnicate'"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo, "--epochz", "3", "--out", "x.kde"), Does.Contain("--epochz"));
        Assert.That(Fails("train", "--model", "bert", "--data", _criteo, "--out", "x.kde"), Does.Contain("bert"));
        var badCfg = Write("bad.json", """{"model": "dnn", "embedingDim": 4}""");
        var e = Fails("train", "--config", badCfg, "--data", _criteo, "--out", Path.Combine(_dir, "x.kde"));
        Assert.That(e, Does.Contain("bad.json").And.Contain("embedingDim"));
        var badKd = Write("badkd.json", """{"student": {"model": "dnn"}, "temprature": 3}""");
        e = Fails("distill", "--method", "rocket", "--config", badKd, "--data", _synth, "--schema", _synthSchema, "--out", Path.Combine(_dir, "x.kde"));
        Assert.That(e, Does.Contain("badkd.json").And.Contain("temprature"));
        Assert.That(Fails("eval", "--model", Path.Combine(_dir, "missing.kde"), "--data", _criteo), Does.Contain("missing.kde"));
        Assert.That(Fails("eval", "--model", _criteo, "--data", _criteo), Does.Contain("criteo300.csv"));
        Assert.That(Fails("train", "--model", "dnn", "--data", _criteo), Does.Contain("--out"));
    }

    [Test]
    public void VerboseAddsTheStackTrace()
    {
        var (code, _, e) = Run("eval", "--model", Path.Combine(_dir, "missing.kde"), "--data", _criteo, "--verbose");
        Assert.That(code, Is.EqualTo(1));
        Assert.That(e, Does.Contain(" at "));
    }

    [TestCase("logits")]
    [TestCase("hint")]
    [TestCase("rocket")]
    [TestCase("double-dnn")]
    [TestCase("pfd")]
    [TestCase("ensemble")]
    [TestCase("ensemble-joint")]
    public void DistillEachMethodProducesAStudentThatEvalLoads(string method)
    {
        var student = Path.Combine(_dir, $"student-{method}.kde");
        var args = new List<string> { "distill", "--data", _synth, "--schema", _synthSchema, "--epochs", "2", "--out", student };
        switch (method)
        {
            case "logits" or "hint": args.AddRange(["--method", method, "--teacher", _teacher]); break;
            case "ensemble": args.AddRange(["--method", "ensemble", "--teacher", _teacher, "--teacher", _teacher2, "--config", _kd]); break;
            case "ensemble-joint":
                var joint = Write("joint.json", File.ReadAllText(_kd).Replace("\"alpha\"", "\"ensembleMode\": \"joint\", \"alpha\""));
                args.AddRange(["--method", "ensemble", "--config", joint, "--min-count", "1"]);
                break;
            default: args.AddRange(["--method", method, "--config", _kd, "--min-count", "1"]); break;
        }
        if (method is "logits" or "hint")
            args.AddRange(["--config", Write($"kd-{method}.json", """{"student": {"model": "dnn", "embeddingDim": 4, "dnn": [8]}}""")]);
        var o = Ok(args.ToArray());
        // Streamed; with a teacher fixing the preprocessing no pass has read the train part yet, but the split counted every part.
        Assert.That(o, Does.Contain("400 rows → train 320 / validation 40 / test 40"));
        double distillTestAuc = Number(o, @"student test AUC ([0-9.]+)");
        var eval = Ok("eval", "--model", student, "--data", _synth);
        Assert.That(eval, Does.Contain(": 400 rows"));
        Assert.That(eval, Does.Contain("(dnn)"));
        Assert.That(distillTestAuc, Is.InRange(0.0, 1.0));

        // The student never sees the privileged field P1, and its checkpoint holds no teacher/booster tensor.
        var loaded = KdEngine.Pipelines.CtrPipeline.Load(student);
        Assert.That(loaded.Model.Fields.Select(f => f.Name), Does.Not.Contain("P1"));
        Assert.That(loaded.Model.Parameters().Select(p => p.Name), Has.None.Contains("cin").And.None.Contains("cross").And.None.Contains("gate"));
    }

    [Test]
    public void CacheLogitsThenDistillFromTheCache_AndACacheForOtherDataIsRejected()
    {
        var cache = Path.Combine(_dir, "teacher.logits.safetensors");
        Assert.That(Ok("cache-logits", "--model", _teacher, "--data", _synth, "--out", cache), Does.Contain("cached 400 teacher logits"));
        // cache-logits streams; its file equals the in-memory computation's byte for byte, and no temporary file is left.
        var loadedTeacher = KdEngine.Pipelines.CtrPipeline.Load(_teacher);
        var encoded = KdEngine.Pipelines.CtrPipeline.EncodeFor(loadedTeacher, _synth);
        var inMemory = Path.Combine(_dir, "teacher.in-memory.safetensors");
        KdEngine.Distillation.TeacherLogitCache.Save(inMemory, KdEngine.Distillation.TeacherLogitCache.Compute(loadedTeacher.Model, encoded), encoded,
            Path.GetFileName(_synth), Path.GetFileName(_teacher), loadedTeacher.Preprocessor);
        Assert.That(File.ReadAllBytes(cache), Is.EqualTo(File.ReadAllBytes(inMemory)));
        Assert.That(Directory.GetFiles(_dir, "*.tmp-*"), Is.Empty);
        // A bad row is refused naming the file and line, and leaves neither a cache nor a temporary file.
        var badLines = File.ReadAllLines(_synth);
        badLines[57] = string.Join('\t', badLines[57].Split('\t').Take(3));
        var bad = Write("bad-rows.tsv", string.Join("\n", badLines) + "\n");
        var badCache = Path.Combine(_dir, "bad.logits.safetensors");
        Assert.That(Fails("cache-logits", "--model", _teacher, "--data", bad, "--out", badCache), Does.Contain("bad-rows.tsv").And.Contain("58"));
        Assert.That(File.Exists(badCache), Is.False);
        Assert.That(Directory.GetFiles(_dir, "*.tmp-*"), Is.Empty);
        var student = Path.Combine(_dir, "student-cached.kde");
        var kd = Write("kd-cache.json", """{"student": {"model": "dnn", "embeddingDim": 4, "dnn": [8]}}""");
        // Streamed: the cache is checked in streaming passes and read in place, not loaded.
        Assert.That(Ok("distill", "--method", "logits", "--teacher-logits", cache, "--config", kd, "--data", _synth, "--epochs", "2", "--out", student),
            Does.Contain("teacher.logits.safetensors: 400 rows, fingerprint and logits checked"));
        Assert.That(Ok("eval", "--model", student, "--data", _synth), Does.Contain(": 400 rows"));
        // tune searches a distillation from the cache streamed the same way (and in memory under a random split).
        string[] tuneArgs = ["tune", "--method", "logits", "--teacher-logits", cache, "--config", kd, "--param", "alpha=0.3|0.7", "--epochs", "1", "--seeds", "1"];
        var tuned = Ok([.. tuneArgs, "--data", _synth, "--out-dir", Path.Combine(_dir, "tune-kd")]);
        Assert.That(tuned, Does.Contain("teacher.logits.safetensors: 400 rows, fingerprint and logits checked").And.Contain("tune: test (read once)"));
        Assert.That(Regex.Matches(tuned, @"trial +\d+: AUC").Count, Is.EqualTo(2));
        var final = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "tune-kd", "final.json")))!;
        Assert.That((bool)final["training"]!["wideFirst"]!, Is.False, "a distilled DNN student keeps the joint start (its LR-first start is for supervised training)");
        Assert.That(Ok([.. tuneArgs, "--data", _synth, "--split-mode", "random", "--out-dir", Path.Combine(_dir, "tune-kd-random")]), Does.Contain("tune: test (read once)"));
        Assert.That(Fails([.. tuneArgs, "--train", _synth, "--valid", _synth, "--test", _synth, "--out-dir", Path.Combine(_dir, "tune-kd-sets")]),
            Does.Contain("tune: --teacher-logits").And.Contain("one data file"));

        // Same schema and row count, other rows: the fingerprint differs.
        var other = Path.Combine(_dir, "other.tsv");
        Ok("synth", "--rows", "400", "--fields", "4", "--privileged", "1", "--vocab", "20", "--seed", "9", "--out", other);
        var e = Fails("distill", "--method", "logits", "--teacher-logits", cache, "--config", kd, "--data", other, "--epochs", "1", "--out", Path.Combine(_dir, "x.kde"));
        Assert.That(e, Does.Contain("teacher.logits.safetensors").And.Contain("synth.tsv").And.Contain("other.tsv"));
        // Other row count.
        var shorter = Path.Combine(_dir, "short.tsv");
        Ok("synth", "--rows", "100", "--fields", "4", "--privileged", "1", "--vocab", "20", "--seed", "3", "--out", shorter);
        e = Fails("distill", "--method", "logits", "--teacher-logits", cache, "--config", kd, "--data", shorter, "--epochs", "1", "--out", Path.Combine(_dir, "x.kde"));
        Assert.That(e, Does.Contain("400 rows").And.Contain("100 rows"));
    }

    [Test]
    public void DistillFromExternalTeacherScores_AColumnARowAlignedOrKeyedFile_AndBadFilesAreNamed()
    {
        // An external teacher's logits: here the xDeepFM teacher's, written the way a GBDT's would be.
        var loaded = KdEngine.Pipelines.CtrPipeline.Load(_teacher);
        var z = KdEngine.Pipelines.CtrPipeline.Logits(loaded.Model, KdEngine.Pipelines.CtrPipeline.EncodeFor(loaded, _synth));
        var dataLines = File.ReadAllLines(_synth);
        var labels = dataLines.Skip(1).Select(l => l.Split('\t')[0]).ToArray();
        string Z(int r) => z[r].ToString("R", CultureInfo.InvariantCulture);
        var aligned = Write("gbdt.csv", "row,label,logit\n" + string.Concat(Enumerable.Range(0, 400).Select(r => $"{r},{labels[r]},{Z(r)}\n")));
        var kd = Write("kd-external.json", """{"student": {"model": "dnn", "embeddingDim": 4, "dnn": [8]}}""");
        var student = Path.Combine(_dir, "student-external.kde");
        var o = Ok("distill", "--method", "logits", "--teacher-file", aligned, "--config", kd, "--data", _synth, "--schema", _synthSchema, "--epochs", "2", "--out", student);
        Assert.That(o, Does.Contain("external teacher scores: logits in gbdt.csv (by row)"));
        Assert.That(Ok("eval", "--model", student, "--data", _synth), Does.Contain(": 400 rows"));

        // The same scores as a column of the data file, and keyed by an id column (as probabilities, in another order).
        var withColumns = Write("synth-scored.tsv", string.Join("\n", dataLines.Select((l, i) => i == 0 ? l + "\tid\tt" : $"{l}\tu{i - 1}\t{Z(i - 1)}")) + "\n");
        Ok("distill", "--method", "logits", "--teacher-column", "t", "--config", kd, "--data", withColumns, "--schema", _synthSchema, "--epochs", "1", "--out", student);
        var keyed = Write("keyed.csv", "id,p\n" + string.Concat(Enumerable.Range(0, 400).Reverse().Select(r =>
            $"u{r},{(1 / (1 + Math.Exp(-z[r]))).ToString("R", CultureInfo.InvariantCulture)}\n")));
        Ok("distill", "--method", "logits", "--teacher-file", keyed, "--teacher-key", "id", "--teacher-score", "probability", "--config", kd,
            "--data", withColumns, "--schema", _synthSchema, "--epochs", "1", "--out", student);

        // A teacher model and external scores together: members of the ensemble (averaged here), stopped on the student's
        // validation AUC by default and on the KD term (ECKD's rule) when asked.
        var average = Write("kd-average.json", """{"student": {"model": "dnn", "embeddingDim": 4, "dnn": [8]}, "ensembleMode": "average"}""");
        o = Ok("distill", "--method", "ensemble", "--teacher", _teacher, "--teacher-file", aligned, "--config", average, "--data", _synth, "--epochs", "2", "--out", student);
        Assert.That(o, Does.Not.Contain("distillation (kd)").And.Contain("validation AUC"));
        o = Ok("distill", "--method", "ensemble", "--teacher", _teacher, "--teacher-file", aligned, "--config", average, "--data", _synth, "--epochs", "2",
            "--metric", "kd", "--out", student);
        Assert.That(o, Does.Contain("distillation (kd)"));

        var shortFile = Write("short.csv", string.Join("\n", File.ReadAllLines(aligned).Take(300)) + "\n");
        var e = Fails("distill", "--method", "logits", "--teacher-file", shortFile, "--config", kd, "--data", _synth, "--schema", _synthSchema, "--epochs", "1", "--out", student);
        Assert.That(e, Does.Contain("short.csv").And.Contain("no score for data row 299"));
        var nan = File.ReadAllLines(aligned);
        nan[11] = $"10,{labels[10]},NaN";
        var nanFile = Write("nan.csv", string.Join("\n", nan) + "\n");
        e = Fails("distill", "--method", "logits", "--teacher-file", nanFile, "--config", kd, "--data", _synth, "--schema", _synthSchema, "--epochs", "1", "--out", student);
        Assert.That(e, Does.Contain("nan.csv:12: column 3 (logit)").And.Contain("data row 10"));
        e = Fails("distill", "--method", "logits", "--teacher-key", "id", "--config", kd, "--data", _synth, "--schema", _synthSchema, "--out", student);
        Assert.That(e, Does.Contain("--teacher-key").And.Contain("--teacher-file"));
    }

    [Test]
    public void ExperimentKdSyntheticTakesTheGeneratorKnobsAndSweepsRocketLambda()
    {
        var o = Ok("experiment", "kd", "--dataset", "synthetic", "--rows", "3000", "--fields", "4", "--vocab", "20", "--privileged-fields", "1",
            "--third-order-terms", "2", "--third-order-scale", "1.5", "--pairwise-scale", "0.8", "--rank", "3", "--zipf", "0.5", "--data-seed", "7",
            "--methods", "rocket", "--rocket-lambda", "0.1,1", "--seeds", "1", "--epochs", "1", "--teacher-dnn", "8", "--teacher-cin", "4", "--student-dnn", "4",
            "--learning-rate", "0.003");
        Assert.That(o, Does.Contain("Adam lr 0.003, batch 256, up to 1 epochs"));
        // The header names every generator setting, so the table can be reproduced from it.
        Assert.That(o, Does.Contain("generator: fields 4, vocab 20, zipf 0.5, base-ctr 0.2, first-order-scale 1, pairwise-scale 0.8, rank 3, " +
            "third-order-terms 2, third-order-scale 1.5, privileged-fields 1, privileged-signal 1, privileged-noise 0.5, privileged-buckets 16, seed 7"));
        Assert.That(o, Does.Match(@"Bayes test AUC: 0\.\d{4} with the hidden logit, 0\.\d{4} with its ordinary-field part"));
        Assert.That(o, Does.Contain("| rocket λ=0.1 | student |").And.Contain("| rocket λ=1 | student |").And.Contain("| rocket | student |"));
        Assert.That(o, Does.Match(@"rocket: chosen on validation per seed: seed 1 λ=(0\.1|1)"));

        Assert.That(Fails("experiment", "kd", "--dataset", "synthetic", "--pairwise-scale", "-1"), Does.Contain("--pairwise-scale").And.Contain("≥ 0"));
        Assert.That(Fails("experiment", "kd", "--dataset", "synthetic", "--base-ctr", "1.5"), Does.Contain("--base-ctr").And.Contain("(0, 1)"));
        Assert.That(Fails("experiment", "kd", "--dataset", "synthetic", "--fields", "2"), Does.Contain("ThirdOrderTerms").And.Contain("3 fields"));
        Assert.That(Fails("experiment", "kd", "--dataset", "criteo", "--vocab", "20"), Does.Contain("--vocab").And.Contain("synthetic only"));
        Assert.That(Fails("experiment", "kd", "--dataset", "criteo", "--third-order-scale", "2"), Does.Contain("--third-order-scale").And.Contain("synthetic only"));
        Assert.That(Fails("experiment", "kd", "--dataset", "synthetic", "--privileged", "2"), Does.Contain("--privileged-fields"));
        Assert.That(Fails("experiment", "kd", "--dataset", "synthetic", "--rocket-lambda", "0.1,x"), Does.Contain("--rocket-lambda").And.Contain("'x'"));
        Assert.That(Fails("experiment", "kd", "--dataset", "synthetic", "--rocket-select", "f1"), Does.Contain("--rocket-select").And.Contain("f1"));
        Assert.That(Fails("experiment", "kd", "--dataset", "synthetic", "--learning-rate", "0"), Does.Contain("--learning-rate"));
        Assert.That(Fails("experiment", "kd", "--dataset", "synthetic", "--teacher-dnn", "200,x"), Does.Contain("--teacher-dnn").And.Contain("'x'"));
        // Absent list options keep the documented defaults (not empty lists).
        o = Ok("experiment", "kd", "--dataset", "synthetic", "--rows", "1000", "--fields", "4", "--vocab", "5", "--methods", "", "--seeds", "1", "--epochs", "1");
        Assert.That(o, Does.Contain("teacher: {\"model\":\"xDeepFm\"").And.Contain("\"dnn\":[400,400]").And.Contain("\"cin\":[100,100]"));
        Assert.That(o, Does.Contain("student: {\"model\":\"dnn\",\"embeddingDim\":10,\"embeddingInitStd\":0.01,\"dnn\":[32]"));
        Assert.That(o, Does.Contain("rocket λ 1,"));
        var help = Ok("experiment", "kd", "--help");
        Assert.That(help, Does.Contain("--third-order-scale <X>").And.Contain("--rocket-lambda <LIST>").And.Contain("--privileged-fields <K>"));
    }

    [Test]
    public void ExperimentKdTakesNewTeachersFromAConfigAndKeepsDefaultListsUnlessGiven()
    {
        var cfg = Write("kd-ffm.json", """
            {"teacher": {"model": "ffm", "embeddingDim": 3}, "teacherTraining": {"optimizer": "adagrad", "learningRate": 0.05, "epochs": 1},
             "ensembleTeachers": [{"model": "dcnv2", "embeddingDim": 4, "dnn": [8], "crossRank": 2, "crossExperts": 2}],
             "ensembleTeacherTraining": [{"optimizer": "adam", "learningRate": 0.01, "epochs": 1}], "methods": ["logits", "ensemble"]}
            """);
        var o = Ok("experiment", "kd", "--config", cfg, "--dataset", "synthetic", "--rows", "3000", "--fields", "4", "--vocab", "20",
            "--third-order-terms", "2", "--seeds", "1", "--epochs", "1");
        Assert.That(o, Does.Contain("teacher: {\"model\":\"ffm\",\"embeddingDim\":3"));
        Assert.That(o, Does.Contain("student: {\"model\":\"dnn\",\"embeddingDim\":10,\"embeddingInitStd\":0.01,\"dnn\":[32]"), "the student's default widths survive");
        Assert.That(o, Does.Contain("ensemble teacher: {\"model\":\"dcnV2\"").And.Contain("teacher trained alone with: {").And.Contain("\"optimizer\": \"adagrad\""));
        Assert.That(o, Does.Contain("rocket λ 1,"), "the default λ list survives");
        Assert.That(o, Does.Contain("ensemble teacher 0 trained alone with: {").And.Contain("\"learningRate\": 0.01"));
        Assert.That(o, Does.Contain("| logits | student |").And.Contain("| ensemble-teacher-dcnv2 | teacher |").And.Contain("| ensemble | student |"));
        var bad = Write("kd-bad.json", """{"teacher": {"model": "ffm"}, "teachr": {}}""");
        Assert.That(Fails("experiment", "kd", "--config", bad, "--dataset", "synthetic", "--rows", "3000"), Does.Contain("kd-bad.json").And.Contain("teachr"));
    }

    [Test]
    public void SynthTakesTheGeneratorShapeKnobs()
    {
        var path = Path.Combine(_dir, "shaped.tsv");
        var o = Ok("synth", "--rows", "50", "--fields", "3", "--vocab", "10", "--third-order-scale", "2", "--rank", "2", "--seed", "4", "--out", path);
        Assert.That(o, Does.Contain("third-order-scale 2").And.Contain("rank 2"));
        Assert.That(File.ReadAllLines(path), Has.Length.EqualTo(51));
        Assert.That(Fails("synth", "--rows", "50", "--zipf", "-0.5", "--out", path), Does.Contain("--zipf"));
    }

    [Test]
    public void ExperimentZooRunsOneSeedOfTwoModels()
    {
        var cfg = Write("zoo.json", """
            {"training": {"epochs": 1, "batchSize": 256}, "models": {"lr": {"model": "lr"}, "dnn": {"model": "dnn", "embeddingDim": 4, "dnn": [8]}}}
            """);
        var o = Ok("experiment", "zoo", "--seeds", "1", "--models", "lr,dnn", "--config", cfg, "--data", _criteo);
        Assert.That(o, Does.Contain("| lr | "));
        Assert.That(o, Does.Contain("| dnn | "));
        var bad = Write("zoobad.json", """{"training": {"epochs": 1, "batchsize": 256}}""");
        Assert.That(Fails("experiment", "zoo", "--seeds", "1", "--config", bad, "--data", _criteo), Does.Contain("batchsize"));
    }

    private string Gzip(string name, string content)
    {
        var path = Path.Combine(_dir, name);
        using var file = File.Create(path);
        using var gz = new System.IO.Compression.GZipStream(file, System.IO.Compression.CompressionLevel.Fastest);
        gz.Write(System.Text.Encoding.UTF8.GetBytes(content));
        return path;
    }

    [Test]
    public void TrainStreamsInputSetsOfGlobsAndGzipAndEvalPredictTakeSeveralFiles()
    {
        // The 300 Criteo rows as three train files (one gzip), one validation file and one test file.
        var lines = File.ReadAllLines(_criteo);
        string header = lines[0];
        string Part(int from, int to) => header + "\n" + string.Join("\n", lines[(1 + from)..(1 + to)]) + "\n";
        Write("sets_day_0.csv", Part(0, 80));
        Gzip("sets_day_1.csv.gz", Part(80, 160));
        Write("sets_day_2.csv", Part(160, 240));
        string valid = Write("sets_valid.csv", Part(240, 270)), test = Write("sets_test.csv", Part(270, 300));
        string model = Path.Combine(_dir, "sets.kde");
        var train = Ok("train", "--model", "dnn", "--config", _small, "--train", Path.Combine(_dir, "sets_day_{0..2}.csv*"), "--valid", valid, "--test", test,
            "--epochs", "2", "--shuffle-buffer", "100", "--workers", "2", "--out", model);
        Assert.That(train, Does.Contain("train 240 / validation 30 / test 30"));
        Assert.That(train, Does.Contain("fit 3 files (sets_day_0.csv … sets_day_2.csv): 240 rows"));
        Assert.That(train, Does.Match(@"input: [0-9.]+ s of [0-9.]+ s training waited for batches"));
        double testAuc = Number(train, @"\ntest AUC ([0-9.]+)");
        var eval = Ok("eval", "--model", model, "--data", test);
        Assert.That(Number(eval, @"AUC ([0-9.]+)"), Is.EqualTo(testAuc), "eval of the test file reproduces the test AUC train reported");
        Assert.That(Ok("eval", "--model", model, "--data", Path.Combine(_dir, "sets_day_*"), valid), Does.Contain(": 270 rows"));
        string scores = Path.Combine(_dir, "sets_scores.csv");
        Assert.That(Ok("predict", "--model", model, "--data", Path.Combine(_dir, "sets_day_1.csv.gz"), test, "--out", scores), Does.Contain("wrote 110 probabilities"));
        Assert.That(File.ReadAllLines(scores), Has.Length.EqualTo(111));

        // A hash split of one file streams: each row's part from a seeded hash of its row number (binomial part sizes).
        var hashed = Ok("train", "--model", "dnn", "--config", _small, "--data", _synth, "--schema", _synthSchema, "--split-mode", "hash", "--seed", "4", "--epochs", "1", "--out", model);
        var sizes = System.Text.RegularExpressions.Regex.Match(hashed, @"400 rows → train (\d+) / validation (\d+) / test (\d+)");
        Assert.That(sizes.Success, Is.True, hashed);
        Assert.That(Enumerable.Range(1, 3).Sum(g => int.Parse(sizes.Groups[g].Value, CultureInfo.InvariantCulture)), Is.EqualTo(400));
        Assert.That(sizes.Groups[1].Value, Is.Not.EqualTo("320"));
        Assert.That(Ok("train", "--help"), Does.Contain("hash"));

        Assert.That(Fails("train", "--model", "dnn", "--train", valid, "--out", model), Does.Contain("--valid"));
        Assert.That(Fails("train", "--model", "dnn", "--train", valid, "--valid", valid, "--data", _criteo, "--out", model), Does.Contain("not both"));
        Assert.That(Fails("train", "--model", "dnn", "--train", Path.Combine(_dir, "nothing_*.csv"), "--valid", valid, "--out", model), Does.Contain("nothing_*.csv"));
    }

    [Test]
    public void TrainWithACacheParsesNoTextTheSecondTimeAndSkippedRowsAreCountedPerFile()
    {
        string cache = Path.Combine(_dir, "cache");
        string model = Path.Combine(_dir, "cached.kde");
        var first = Ok("train", "--model", "dnn", "--config", _small, "--data", _criteo, "--epochs", "1", "--cache", cache, "--out", model);
        Assert.That(first, Does.Contain("wrote cache"));
        var second = Ok("train", "--model", "dnn", "--config", _small, "--data", _criteo, "--epochs", "1", "--cache", cache, "--out", model);
        Assert.That(second, Does.Contain("reused (no text parsed)").And.Contain("train rows from cache train."));
        Assert.That(Number(second, @"\ntest AUC ([0-9.]+)"), Is.EqualTo(Number(first, @"\ntest AUC ([0-9.]+)")));

        var lines = File.ReadAllLines(_criteo);
        lines[57] = "x" + lines[57];
        string bad = Write("criteo_bad.csv", string.Join("\n", lines) + "\n");
        Assert.That(Fails("train", "--model", "dnn", "--config", _small, "--data", bad, "--epochs", "1", "--out", model),
            Does.Contain("criteo_bad.csv:58: column 1 (label): non-numeric label"));
        var skipped = Ok("train", "--model", "dnn", "--config", _small, "--data", bad, "--epochs", "1", "--bad-rows", "skip", "--out", model);
        Assert.That(skipped, Does.Contain("skipped 1 bad row(s) of 240 in criteo_bad.csv (first: criteo_bad.csv:58: column 1 (label)"));
    }

    [Test]
    public void ConvertWritesParquetThatTrainsLikeTheCsvAndBack()
    {
        string parquet = Path.Combine(_dir, "criteo300.parquet");
        Assert.That(Ok("convert", "--data", _criteo, "--out", parquet), Does.Contain("wrote 300 rows"));
        string m1 = Path.Combine(_dir, "pq_csv.kde"), m2 = Path.Combine(_dir, "pq_pq.kde");
        var fromCsv = Ok("train", "--model", "dnn", "--config", _small, "--data", _criteo, "--epochs", "2", "--out", m1);
        var fromParquet = Ok("train", "--model", "dnn", "--config", _small, "--data", parquet, "--epochs", "2", "--out", m2);
        Assert.That(fromParquet, Does.Contain("(parquet)"));
        Assert.That(Number(fromParquet, @"\ntest AUC ([0-9.]+)"), Is.EqualTo(Number(fromCsv, @"\ntest AUC ([0-9.]+)")), "the same rows, the same model");
        string back = Path.Combine(_dir, "criteo300_back.csv");
        Assert.That(Ok("convert", "--data", parquet, "--out", back), Does.Contain("wrote 300 rows"));
        Assert.That(Number(Ok("eval", "--model", m1, "--data", back), @"AUC ([0-9.]+)"), Is.EqualTo(Number(Ok("eval", "--model", m1, "--data", _criteo), @"AUC ([0-9.]+)")));
        Assert.That(Fails("convert", "--data", _criteo, "--to", "csv", "--out", back), Does.Contain("--to parquet"));
    }

    [Test]
    public void DistillStreamsInputSetsWithTheTeachersPreprocessing()
    {
        var lines = File.ReadAllLines(_synth);
        string train = Write("kd_train.tsv", string.Join("\n", lines[..321]) + "\n");
        string valid = Write("kd_valid.tsv", lines[0] + "\n" + string.Join("\n", lines[321..]) + "\n");
        string student = Path.Combine(_dir, "kd_streamed.kde");
        var o = Ok("distill", "--method", "logits", "--teacher", _teacher, "--config", _kd, "--train", train, "--valid", valid,
            "--epochs", "1", "--shuffle-buffer", "50", "--out", student);
        // The teachers fix the preprocessing: no fit pass, so the train rows are counted by the first epoch ("?" before).
        Assert.That(o, Does.Contain("train ? / validation 80").And.Contain("read train kd_train.tsv: 320 rows").And.Contain("student test: no --test files given"));
        Assert.That(Ok("eval", "--model", student, "--data", valid), Does.Contain(": 80 rows"));
        Assert.That(Fails("distill", "--method", "logits", "--teacher-logits", Path.Combine(_dir, "none.safetensors"), "--train", train, "--valid", valid, "--out", student),
            Does.Contain("none.safetensors"));
        // External scores index one file's rows: input sets are refused with them.
        Assert.That(Fails("distill", "--method", "logits", "--teacher-column", "t", "--train", train, "--valid", valid, "--out", student),
            Does.Contain("one data file").And.Contain("--split"));
    }
}
