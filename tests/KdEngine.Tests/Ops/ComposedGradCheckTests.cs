using System.Numerics;
using KdEngine.Autograd;
using KdEngine.Ops;
using KdEngine.Tensors;
using NUnit.Framework;
using static KdEngine.Tests.Autograd.GradCheckTests;

namespace KdEngine.Tests.Ops;

/// <summary>Whole small networks checked end to end: every parameter's gradient through several ops at once.</summary>
public class ComposedGradCheckTests
{
    [TestCase(1, 5, 7)]
    [TestCase(7, 17, 33)]
    public void Two_layer_MLP_under_BCE(int batch, int inF, int hidden)
    {
        // Linear [B, in] → [B, hidden] → ReLU → Linear → [B, 1] → BceWithLogits against fixed labels.
        static Tensor<T> F<T>(Tensor<T>[] p) where T : unmanaged, IFloatingPointIeee754<T>
            => Op.BceWithLogits(Op.Linear(Op.Relu(Op.Linear(p[0], p[1], p[2])), p[3], p[4]), p[5]);
        var labels = Random(batch, 100, 0, 1).Select(v => v > 0.5 ? 1.0 : 0.0).ToArray();
        AssertPasses(GradCheck.Run(F<double>, F<float>,
            [Random(batch * inF, 101), Random(hidden * inF, 102), Random(hidden, 103), Random(hidden, 104), Random(1, 105), labels],
            [new Shape(batch, inF), new Shape(hidden, inF), new Shape(hidden), new Shape(1, hidden), new Shape(1), new Shape(batch, 1)],
            constant: [5]));
    }

    [TestCase(1)]
    [TestCase(7)]
    public void MLP_mixing_Sigmoid_Tanh_LeakyRelu_Concat_and_Split(int batch)
    {
        // h = Linear(x) [B, 17] split into [B, 9] → σ and [B, 8] → tanh; both concatenated with the raw input
        // [B, 5] into [B, 22] → LeakyReLU → Linear → [B, 1] logits; loss = BCE + 0.5·BinaryKd vs a fixed teacher
        // + 0.01·‖W1‖². x itself is checked too (input gradient through Split, Concat and both Linears).
        static Tensor<T> F<T>(Tensor<T>[] p) where T : unmanaged, IFloatingPointIeee754<T>
        {
            var h = Op.Linear(p[0], p[1], p[2]);
            var parts = Op.Split(h, [9, 8], 1);
            var c = Op.Concat([Op.Sigmoid(parts[0]), Op.Tanh(parts[1]), p[0]], -1);
            var z = Op.Linear(Op.LeakyRelu(c, T.CreateChecked(0.2)), p[3], p[4]);
            var loss = Op.Add(Op.BceWithLogits(z, p[5]), Op.Scale(Op.BinaryKd(p[6], z, T.CreateChecked(2)), T.CreateChecked(0.5)));
            return Op.Add(loss, Op.Scale(Op.SumSquares(p[1]), T.CreateChecked(0.01)));
        }
        var labels = Random(batch, 110, 0, 1).Select(v => v > 0.5 ? 1.0 : 0.0).ToArray();
        AssertPasses(GradCheck.Run(F<double>, F<float>,
            [Random(batch * 5, 111), Random(17 * 5, 112), Random(17, 113), Random(22, 114), Random(1, 115), labels, Random(batch, 116, -2, 2)],
            [new Shape(batch, 5), new Shape(17, 5), new Shape(17), new Shape(1, 22), new Shape(1), new Shape(batch, 1), new Shape(batch, 1)],
            constant: [5, 6]));
    }
}
