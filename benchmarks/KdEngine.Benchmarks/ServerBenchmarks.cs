using System.Buffers;
using System.Globalization;
using System.Text;
using BenchmarkDotNet.Attributes;
using KdEngine.Data;
using KdEngine.Models;
using KdEngine.Pipelines;
using KdEngine.Server.Api;
using KdEngine.Server.Batching;
using KdEngine.Server.Models;
using KdEngine.Serving;

namespace KdEngine.Benchmarks;

/// <summary>
/// The service's two halves measured apart, on the quickstart's DNN student shape (Criteo, D = 10, DNN [64, 32],
/// preprocessing fitted on the bundled sample with min-count 2; weights as initialised — the speed does not depend on them):
/// <list type="bullet">
/// <item><b>ScoringPath</b>: <c>Requests</c> requests of <c>Candidates</c> encoded rows through the dynamic batcher
/// (queue, merge into one Predictor call, split back, complete). Allocated is per request (the job and its completion),
/// the same for 100 and 1,000 rows: zero bytes per scored row.</item>
/// <item><b>JsonEdge</b>: the same requests as JSON bodies (context × candidates) parsed and encoded through the fitted
/// preprocessing, and their responses written — what the HTTP edge adds. Allocated is per request too (the job, the
/// JSON writer): values are looked up from the request's bytes without strings.</item>
/// <item><b>PredictorAlone</b>: the same rows in one direct Predictor call per request (no batcher): the floor.</item>
/// </list>
/// Run: <c>dotnet run -c Release --project benchmarks/KdEngine.Benchmarks -- --filter '*ServerBenchmarks*' --job short</c>
/// </summary>
[MemoryDiagnoser]
public class ServerBenchmarks
{
    private string _dir = "";
    private ModelVersion _version = null!;
    private DynamicBatcher _batcher = null!;
    private int[][] _ids = [];
    private byte[][] _bodies = [];
    private ScoreJob[] _jobs = [];
    private float[] _scores = [];
    private float[] _probabilities = [];
    private readonly ArrayBufferWriter<byte> _response = new(1 << 20);

    [Params(100, 1000)]
    public int Candidates { get; set; }

    [Params(1, 8)]
    public int Requests { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var data = CtrPipeline.Prepare(new DataSource(DataPaths.FindCriteoSample()) { Format = DataFormat.Criteo }, new SplitOptions(),
            new PreprocessorOptions { MinCount = 2 });
        var model = CtrPipeline.BuildModel(new ModelConfig { Model = ModelKind.Dnn, EmbeddingDim = 10, Dnn = [64, 32], Seed = 1 }, data.Fields);
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-server-bench-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_dir);
        var path = Path.Combine(_dir, "student.kde");
        ModelCheckpoint.Save(path, (ZooModel)model, data.Preprocessor);
        _version = ModelLoader.Load("student", path, 1);
        _batcher = new DynamicBatcher("student", maxBatchRows: 1024, maxWaitMicroseconds: 0, threads: 1, maxQueuedRequests: 64,
            maxRowsPerRequest: 1000, new KdEngine.Server.Metrics.ServerMetrics());

        var rows = new DataSource(DataPaths.FindCriteoSample()) { Format = DataFormat.Criteo }.Open().Take(4000).Select(r => (string?[])r.Values.Clone()).ToArray();
        var schema = _version.Schema.Schema;
        var rng = new Random(3);
        _bodies = new byte[Requests][];
        _ids = new int[Requests][];
        for (int q = 0; q < Requests; q++)
        {
            _bodies[q] = Body(schema, rows, rng, Candidates);
            var job = PredictRequestReader.Read(new ReadOnlySequence<byte>(_bodies[q]), _version, KdEngine.Server.UnknownFieldPolicy.Reject, 1000)!;
            _ids[q] = job.Ids.AsSpan(0, Candidates * _version.Columns).ToArray();
            job.Discard();
        }
        _jobs = new ScoreJob[Requests];
        _scores = new float[Candidates];
        _probabilities = new float[Candidates];
        _version.Predictor.Predict(_ids[0], _probabilities);
        Probabilities.FromLogits(_probabilities); // realistic numbers for the response writer (9 significant digits)
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _batcher.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Context = I1–I13 and C1–C13 of one row; each candidate C14–C26 of another (as the load generator sends).</summary>
    private static byte[] Body(Schema schema, string?[][] rows, Random rng, int candidates)
    {
        var sb = new StringBuilder("{\"context\":{");
        void Fields(string?[] row, IEnumerable<string> names)
        {
            bool first = true;
            foreach (var name in names)
            {
                var v = row[schema.IndexOf(name)];
                if (string.IsNullOrEmpty(v)) continue;
                sb.Append(first ? "" : ",").Append('"').Append(name).Append("\":");
                first = false;
                if (name[0] == 'I') sb.Append(double.Parse(v, CultureInfo.InvariantCulture).ToString("R", CultureInfo.InvariantCulture));
                else sb.Append('"').Append(v).Append('"');
            }
        }
        Fields(rows[rng.Next(rows.Length)], Enumerable.Range(1, 13).Select(i => "I" + i).Concat(Enumerable.Range(1, 13).Select(i => "C" + i)));
        sb.Append("},\"candidates\":[");
        for (int c = 0; c < candidates; c++)
        {
            sb.Append(c == 0 ? "{" : ",{");
            Fields(rows[rng.Next(rows.Length)], Enumerable.Range(14, 13).Select(i => "C" + i));
            sb.Append('}');
        }
        return Encoding.UTF8.GetBytes(sb.Append("]}").ToString());
    }

    [Benchmark]
    public void ScoringPath()
    {
        int c = _version.Columns;
        for (int q = 0; q < Requests; q++)
        {
            var job = _jobs[q] = new ScoreJob(_version, Candidates);
            _ids[q].CopyTo(job.Ids, 0);
            if (!_batcher.TrySubmit(job)) throw new InvalidOperationException("queue full");
        }
        for (int q = 0; q < Requests; q++)
        {
            _jobs[q].Completion.Wait();
            _jobs[q].Release();
        }
    }

    [Benchmark]
    public void JsonEdge()
    {
        for (int q = 0; q < Requests; q++)
        {
            var job = PredictRequestReader.Read(new ReadOnlySequence<byte>(_bodies[q]), _version, KdEngine.Server.UnknownFieldPolicy.Reject, 1000)!;
            _response.ResetWrittenCount();
            Endpoints.WriteScores(_response, _version, _probabilities);
            job.Discard();
        }
    }

    [Benchmark(Baseline = true)]
    public void PredictorAlone()
    {
        for (int q = 0; q < Requests; q++) _version.Predictor.Predict(_ids[q], _scores);
    }
}
