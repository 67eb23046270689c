using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace KdEngine.Peers;

/// <summary>
/// PyTorch's <c>torch.optim.SparseAdam</c> (torch/optim/_functional.py, <c>sparse_adam</c>), ported to TorchSharp ops
/// because TorchSharp 0.107 has no SparseAdam (and its Adam updates every row densely): for each embedding table with a
/// sparse gradient, coalesce the gradient (rows made unique, duplicate rows summed — done with unique + index_add_, as
/// TorchSharp exposes no coalesce), then update only those rows' moments and weights:
/// <code>
///   m_r ← m_r + (1−β1)(g_r − m_r);  v_r ← v_r + (1−β2)(g_r² − v_r)
///   w_r ← w_r − lr·√(1−β2ᵗ)/(1−β1ᵗ) · m_r / (√v_r + ε)
/// </code>
/// One step count per table (as SparseAdam's <c>state['step']</c>).
/// </summary>
public sealed class SparseAdam
{
    private readonly Parameter[] _params;
    private readonly Tensor[] _m, _v;
    private readonly double _lr, _beta1, _beta2, _eps;
    private long _step;

    public SparseAdam(IEnumerable<Parameter> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8)
    {
        _params = parameters.ToArray();
        _m = _params.Select(p => torch.zeros_like(p)).ToArray();
        _v = _params.Select(p => torch.zeros_like(p)).ToArray();
        (_lr, _beta1, _beta2, _eps) = (lr, beta1, beta2, eps);
    }

    /// <summary>Drops the gradients (set to none, as PyTorch's zero_grad does by default).</summary>
    public void zero_grad()
    {
        foreach (var p in _params) p.grad = null;
    }

    public void step()
    {
        _step++;
        double stepSize = _lr * Math.Sqrt(1 - Math.Pow(_beta2, _step)) / (1 - Math.Pow(_beta1, _step));
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        for (int i = 0; i < _params.Length; i++)
        {
            var grad = _params[i].grad;
            if (grad is null) continue;
            if (!grad.is_sparse) throw new InvalidOperationException("SparseAdam: the parameter's gradient is dense (is the embedding sparse?).");
            var indices = grad.SparseIndices[0];                           // [nnz] rows, duplicates possible
            var values = grad.SparseValues;                                // [nnz, D]
            var (rows, inverse, _) = torch.unique(indices, sorted: true, return_inverse: true);
            var g = torch.zeros(rows.shape[0], values.shape[1]).index_add_(0, inverse!, values, 1.0); // coalesced [n, D]
            var m = _m[i].index_select(0, rows);
            var v = _v[i].index_select(0, rows);
            m.add_(g.sub(m).mul_(1 - _beta1));
            v.add_(g.mul(g).sub_(v).mul_(1 - _beta2));
            _m[i].index_copy_(0, rows, m);
            _v[i].index_copy_(0, rows, v);
            _params[i].index_add_(0, rows, m.div(v.sqrt().add_(_eps)), -stepSize);
        }
    }
}
