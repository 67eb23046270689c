using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Nn;

/// <summary>y = x·Wᵀ + b, W [out, in], b [out] — PyTorch's Linear layout and default initialisation.</summary>
public sealed class Linear : Module
{
    /// <summary>
    /// A layer [<paramref name="inFeatures"/> → <paramref name="outFeatures"/>] with weight and bias uniform in
    /// ±1/√in (PyTorch's default), drawn from <paramref name="rng"/>; <paramref name="bias"/> false leaves the bias out.
    /// </summary>
    public Linear(int inFeatures, int outFeatures, Random rng, bool bias = true)
    {
        if (inFeatures <= 0 || outFeatures <= 0)
            throw new ArgumentException($"Linear: sizes must be positive (in {inFeatures}, out {outFeatures}).");
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        float bound = 1f / MathF.Sqrt(inFeatures);
        Weight = AddParameter("weight", Init.Uniform(rng, bound, outFeatures, inFeatures));
        Bias = bias ? AddParameter("bias", Init.Uniform(rng, bound, outFeatures)) : null;
    }

    /// <summary>Input width.</summary>
    public int InFeatures { get; }
    /// <summary>Output width.</summary>
    public int OutFeatures { get; }
    /// <summary>W [out, in] (parameter <c>weight</c>).</summary>
    public Tensor<float> Weight { get; }
    /// <summary>b [out] (parameter <c>bias</c>); null without a bias.</summary>
    public Tensor<float>? Bias { get; }

    /// <summary>x [B, in] → [B, out].</summary>
    public Tensor<float> Forward(Tensor<float> x) => Op.Linear(x, Weight, Bias);
}
