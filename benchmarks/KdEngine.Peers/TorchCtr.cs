using KdEngine.Models;
using Activation = KdEngine.Nn.Activation;
using Linear = TorchSharp.Modules.Linear;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KdEngine.Peers;

/// <summary>
/// WDL and xDeepFM written in TorchSharp, holding a copy of a KdEngine <see cref="ZooModel"/>'s weights, so the peer
/// runs exactly the model KdEngine runs (the definitions of docs/models.md):
/// <code>
///   gid   = ids + offsets                         one fused embedding table [ΣV, D] (and [ΣV, 1] for the wide part)
///   wide  = Σ_f wide[gid_f] + b
///   x0    = embedding[gid]                        [B, F, D];   dnn = Linear stack (ReLU) on flatten(x0), Linear(·, 1)
///   cin   = per layer k: z[b,d,i,j] = h[b,d,i]·x0[b,d,j] reshaped to [B·D, H·F]; y = z·Wᵀ + b  → [B, D, H_k]
///           (one large GEMM per layer; or, with <see cref="CinBatchedForm"/>, the usual Conv1d form: B products
///           [H_k, H·F]·[H·F, D] — the scorer picks the faster per batch); split-half; sum over D; Linear(Σ maps, 1)
///   logit = wide + dnn (+ cin)
/// </code>
/// The embedding tables use sparse gradients (<c>sparse: true</c>) for the training comparison.
/// </summary>
public sealed class TorchCtr : nn.Module<Tensor, Tensor>
{
    private readonly Embedding embedding;
    private readonly Embedding wide;
    private readonly Parameter wide_bias;
    private readonly ModuleList<Linear> dnn;
    private readonly Linear dnn_out;
    private readonly ParameterList cin_w;
    private readonly ParameterList cin_b;
    private readonly Linear? cin_out;
    private readonly Tensor offsets;

    private readonly int _fields, _dim;
    private readonly int[] _cin;
    private readonly bool _splitHalf, _isXDeepFm;

    public TorchCtr(ZooModel source) : base("TorchCtr")
    {
        var config = source.Config;
        if (config.Model is not (ModelKind.Wdl or ModelKind.XDeepFm))
            throw new ArgumentException($"TorchCtr: only WDL and xDeepFM are written in TorchSharp (got {config.Model}).");
        if (config.DnnActivation != Activation.Relu || config.CinActivation != Activation.Identity || !config.CinDirectConnections || config.Dropout != 0)
            throw new ArgumentException("TorchCtr: expects ReLU DNN, identity CIN with direct connections, no dropout (the bench/paper configs).");
        _isXDeepFm = config.Model == ModelKind.XDeepFm;
        _fields = source.Fields.Count;
        _dim = config.EmbeddingDim;
        _cin = config.Cin;
        _splitHalf = config.CinSplitHalf;
        var p = source.Parameters().ToDictionary(x => x.Name, x => x.Tensor.ToArray(), StringComparer.Ordinal);
        float[] Param(string name) => p.TryGetValue(name, out var t) ? t : throw new ArgumentException($"TorchCtr: no parameter '{name}'.");

        long rows = source.Fields.Sum(f => (long)f.Cardinality);
        var off = new long[_fields];
        for (int f = 1; f < _fields; f++) off[f] = off[f - 1] + source.Fields[f - 1].Cardinality;

        embedding = nn.Embedding(rows, _dim, sparse: true);
        wide = nn.Embedding(rows, 1, sparse: true);
        wide_bias = new Parameter(torch.zeros(1));
        var layers = new List<Linear>();
        int prev = _fields * _dim;
        foreach (int width in config.Dnn) { layers.Add(nn.Linear(prev, width)); prev = width; }
        dnn = nn.ModuleList(layers.ToArray());
        dnn_out = nn.Linear(prev, 1, hasBias: false);
        cin_w = new ParameterList();
        cin_b = new ParameterList();
        if (_isXDeepFm)
        {
            int maps = _fields, outputs = 0;
            for (int k = 0; k < _cin.Length; k++)
            {
                bool last = k == _cin.Length - 1;
                cin_w.Add(new Parameter(torch.zeros(_cin[k], maps * _fields)));
                cin_b.Add(new Parameter(torch.zeros(_cin[k])));
                int next = _splitHalf && !last ? _cin[k] / 2 : _cin[k];
                outputs += _splitHalf && !last ? _cin[k] - next : _cin[k];
                maps = next;
            }
            cin_out = nn.Linear(outputs, 1, hasBias: false);
        }
        offsets = torch.tensor(off, ScalarType.Int64);
        RegisterComponents();

        using (torch.no_grad())
        {
            Load(embedding.weight!, Concat(source.Fields.Select(f => Param($"embedding.{f.Name}.weight")), rows * _dim), rows, _dim);
            Load(wide.weight!, Concat(source.Fields.Select(f => Param($"linear.{f.Name}.weight")), rows), rows, 1);
            Load(wide_bias, Param("linear.bias"), 1);
            for (int i = 0; i < layers.Count; i++)
            {
                Load(layers[i].weight!, Param($"dnn.{i}.weight"), layers[i].weight!.shape);
                Load(layers[i].bias!, Param($"dnn.{i}.bias"), layers[i].bias!.shape);
            }
            Load(dnn_out.weight!, Param("dnn_out.weight"), dnn_out.weight!.shape);
            if (_isXDeepFm)
            {
                for (int k = 0; k < _cin.Length; k++)
                {
                    Load(cin_w[k], Param($"cin.{k}.weight"), cin_w[k].shape);
                    Load(cin_b[k], Param($"cin.{k}.bias"), cin_b[k].shape);
                }
                Load(cin_out!.weight!, Param("cin_out.weight"), cin_out.weight!.shape);
            }
        }
    }

    /// <summary>The fused embedding tables (sparse gradients) and the dense parameters, for the two optimizers.</summary>
    public (Parameter[] Sparse, Parameter[] Dense) ParameterGroups()
    {
        var all = named_parameters().ToArray();
        bool IsTable(string name) => name is "embedding.weight" or "wide.weight";
        var sparse = all.Where(x => IsTable(x.name)).Select(x => x.parameter).ToArray();
        if (sparse.Length != 2) throw new InvalidOperationException($"TorchCtr: expected 2 embedding tables, found {sparse.Length}.");
        return (sparse, all.Where(x => !IsTable(x.name)).Select(x => x.parameter).ToArray());
    }

    private static void Load(Tensor target, float[] values, params long[] shape)
    {
        using var source = torch.tensor(values, shape);
        target.copy_(source);
    }

    private static float[] Concat(IEnumerable<float[]> tables, long total)
    {
        var all = new float[total];
        long at = 0;
        foreach (var t in tables) { t.CopyTo(all, at); at += t.Length; }
        if (at != total) throw new ArgumentException($"TorchCtr: tables hold {at} values; expected {total}.");
        return all;
    }

    /// <summary>
    /// When true, the CIN runs in the DeepCTR-Torch / Conv1d form: z [B, H·F, D] and one batched matmul W·z per layer
    /// (B products of [H_k, H·F]·[H·F, D]). Off by default; the `torch-cin-probe` verb times both forms.
    /// </summary>
    public bool CinBatchedForm { get; set; }

    public bool IsXDeepFm => _isXDeepFm;

    /// <summary>ids [B, F] int64 (per-field local ids) → logits [B, 1].</summary>
    public override Tensor forward(Tensor ids)
    {
        long b = ids.shape[0];
        var gid = ids + offsets;                                           // [B, F]
        var logit = wide.forward(gid).sum(new long[] { 1, 2 }).view(b, 1) + wide_bias; // [B, 1]
        var x0 = embedding.forward(gid);                                   // [B, F, D]
        var h = x0.view(b, _fields * _dim);
        foreach (var layer in dnn) h = nn.functional.relu(layer.forward(h));
        logit = logit + dnn_out.forward(h);
        if (_isXDeepFm) logit = logit + cin_out!.forward(CinBatchedForm ? CinBatched(x0, b) : Cin(x0, b));
        return logit;
    }

    private Tensor CinBatched(Tensor x0, long b)
    {
        var xRow = x0.unsqueeze(1);                                        // [B, 1, F, D]
        var h = x0;
        long maps = _fields;
        var pooled = new List<Tensor>(_cin.Length);
        for (int k = 0; k < _cin.Length; k++)
        {
            bool last = k == _cin.Length - 1;
            var z = (h.unsqueeze(2) * xRow).view(b, maps * _fields, _dim);  // [B, H·F, D]
            var y = torch.matmul(cin_w[k], z) + cin_b[k].view(_cin[k], 1);   // [B, H_k, D]
            if (_splitHalf && !last)
            {
                long half = _cin[k] / 2;
                h = y.narrow(1, 0, half);
                pooled.Add(y.narrow(1, half, _cin[k] - half).sum(2));
                maps = half;
            }
            else
            {
                h = y;
                pooled.Add(y.sum(2));
                maps = _cin[k];
            }
        }
        return pooled.Count == 1 ? pooled[0] : torch.cat(pooled, 1);
    }

    private Tensor Cin(Tensor x0, long b)
    {
        var x0t = x0.transpose(1, 2).contiguous();                         // [B, D, F]
        var xRow = x0t.unsqueeze(2);                                       // [B, D, 1, F]
        var h = x0t;
        long maps = _fields;
        var pooled = new List<Tensor>(_cin.Length);
        for (int k = 0; k < _cin.Length; k++)
        {
            bool last = k == _cin.Length - 1;
            var z = (h.unsqueeze(3) * xRow).view(b * _dim, maps * _fields); // [B·D, H·F], column i·F + j
            var y = nn.functional.linear(z, cin_w[k], cin_b[k]).view(b, _dim, _cin[k]); // [B, D, H_k]
            if (_splitHalf && !last)
            {
                long half = _cin[k] / 2;
                h = y.narrow(2, 0, half);
                pooled.Add(y.narrow(2, half, _cin[k] - half).sum(1));      // [B, H_k − half]
                maps = half;
            }
            else
            {
                h = y;
                pooled.Add(y.sum(1));                                      // [B, H_k]
                maps = _cin[k];
            }
        }
        return pooled.Count == 1 ? pooled[0] : torch.cat(pooled, 1);
    }
}
