using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Tensors;

namespace KdEngine.Ops;

/// <summary>C = op(A)·op(B) for 2-D tensors, with optional transposes (no copy is made for a transpose).</summary>
internal sealed class MatMulNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _a, _b;
    private readonly bool _ta, _tb;
    private readonly int _m, _n, _k;

    private MatMulNode(Tensor<T> a, Tensor<T> b, bool ta, bool tb, int m, int n, int k)
    { _a = a; _b = b; _ta = ta; _tb = tb; _m = m; _n = n; _k = k; }

    public override string OpName => "MatMul";

    public static Tensor<T> Forward(Tensor<T> a, Tensor<T> b, bool transposeA, bool transposeB)
    {
        if (a.Rank != 2 || b.Rank != 2)
            throw new ArgumentException($"MatMul: operands must be 2-D; got {a.Describe()} and {b.Describe()}.");
        int m = transposeA ? a.Shape[1] : a.Shape[0];
        int k = transposeA ? a.Shape[0] : a.Shape[1];
        int kb = transposeB ? b.Shape[1] : b.Shape[0];
        int n = transposeB ? b.Shape[0] : b.Shape[1];
        if (k != kb)
            throw new ArgumentException(
                $"MatMul: inner dimensions differ: {a.Describe()}{(transposeA ? "ᵀ" : "")} · {b.Describe()}{(transposeB ? "ᵀ" : "")} ({k} vs {kb}).");
        var c = Tape<T>.NewTensor(new Shape(m, n), a.Backend, clear: false);
        a.Backend.Gemm(transposeA, transposeB, m, n, k, T.One, a.Storage, b.Storage, T.Zero, c.Storage);
        if (Tape<T>.ShouldRecord(a, b)) Tape<T>.Record(new MatMulNode<T>(a, b, transposeA, transposeB, m, n, k), c);
        return c;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        var be = _a.Backend;
        // C = op(A)·op(B), G = dC [m, n].
        if (_a.RequiresGrad)
        {
            var ga = tape.GradOf(_a).Storage;
            if (!_ta) be.Gemm(false, !_tb, _m, _k, _n, T.One, g.Storage, _b.Storage, T.One, ga); // dA = G·op(B)ᵀ  [m, k]
            else be.Gemm(_tb, true, _k, _m, _n, T.One, _b.Storage, g.Storage, T.One, ga);       // dA = op(B)·Gᵀ  [k, m]
        }
        if (_b.RequiresGrad)
        {
            var gb = tape.GradOf(_b).Storage;
            if (!_tb) be.Gemm(!_ta, false, _k, _n, _m, T.One, _a.Storage, g.Storage, T.One, gb); // dB = op(A)ᵀ·G  [k, n]
            else be.Gemm(true, _ta, _n, _k, _m, T.One, g.Storage, _a.Storage, T.One, gb);       // dB = Gᵀ·op(A)  [n, k]
        }
    }
}

/// <summary>
/// y = x·Wᵀ + b with W stored [out, in] as in PyTorch's Linear: x [B, in], W [out, in], b [out] → y [B, out].
/// Fused into one node so the bias add costs no extra pass over memory in backward.
/// </summary>
internal sealed class LinearNode<T> : Node<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly Tensor<T> _x, _w;
    private readonly Tensor<T>? _b;

    private LinearNode(Tensor<T> x, Tensor<T> w, Tensor<T>? b) { _x = x; _w = w; _b = b; }

    public override string OpName => "Linear";

    public static Tensor<T> Forward(Tensor<T> x, Tensor<T> w, Tensor<T>? b)
    {
        if (x.Rank != 2 || w.Rank != 2 || x.Shape[1] != w.Shape[1])
            throw new ArgumentException($"Linear: input {x.Describe()} does not match weight {w.Describe()} (expected input [B, {(w.Rank == 2 ? w.Shape[1] : -1)}] and weight [out, in]).");
        if (b is not null && (b.Rank != 1 || b.Shape[0] != w.Shape[0]))
            throw new ArgumentException($"Linear: bias {b.Describe()} does not match weight {w.Describe()} (expected [{w.Shape[0]}]).");
        int batch = x.Shape[0], inF = x.Shape[1], outF = w.Shape[0];
        var y = Tape<T>.NewTensor(new Shape(batch, outF), x.Backend, clear: false);
        var be = x.Backend;
        if (b is not null)
        {
            // y = broadcast(b) first, then y += x·Wᵀ, so the GEMM's beta = 1 does the bias add for free.
            be.Fill(y.Storage, T.Zero);
            be.BroadcastAxisAdd(b.Storage, y.Storage, 1, batch, outF, T.One);
            be.Gemm(false, true, batch, outF, inF, T.One, x.Storage, w.Storage, T.One, y.Storage);
        }
        else be.Gemm(false, true, batch, outF, inF, T.One, x.Storage, w.Storage, T.Zero, y.Storage);
        if (Tape<T>.ShouldRecord(x, w, b)) Tape<T>.Record(new LinearNode<T>(x, w, b), y);
        return y;
    }

    protected internal override void Backward(Tensor<T> g, Tape<T> tape)
    {
        var be = _x.Backend;
        int batch = _x.Shape[0], inF = _x.Shape[1], outF = _w.Shape[0];
        if (_x.RequiresGrad) be.Gemm(false, false, batch, inF, outF, T.One, g.Storage, _w.Storage, T.One, tape.GradOf(_x).Storage); // dx = G·W   [B, in]
        if (_w.RequiresGrad) be.Gemm(true, false, outF, inF, batch, T.One, g.Storage, _x.Storage, T.One, tape.GradOf(_w).Storage); // dW = Gᵀ·x  [out, in]
        if (_b is { RequiresGrad: true }) be.SumAxis(g.Storage, tape.GradOf(_b).Storage, 1, batch, outF, accumulate: true);      // db = Σ_rows G
    }
}

public static partial class Op
{
    /// <summary>op(a)·op(b) for 2-D tensors; a transpose flag reads the operand as transposed without copying.</summary>
    public static Tensor<T> MatMul<T>(Tensor<T> a, Tensor<T> b, bool transposeA = false, bool transposeB = false)
        where T : unmanaged, IFloatingPointIeee754<T>
        => MatMulNode<T>.Forward(a, b, transposeA, transposeB);

    /// <summary>x·Wᵀ + b: x [B, in], W [out, in], b [out] (optional) → [B, out].</summary>
    public static Tensor<T> Linear<T>(Tensor<T> x, Tensor<T> weight, Tensor<T>? bias = null)
        where T : unmanaged, IFloatingPointIeee754<T>
        => LinearNode<T>.Forward(x, weight, bias);
}
