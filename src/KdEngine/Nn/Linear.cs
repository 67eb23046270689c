using KdEngine.Ops;
using KdEngine.Tensors;

namespace KdEngine.Nn;

/// <summary>y = x·Wᵀ + b, W [out, in], b [out] — PyTorch's Linear layout and default initialisation.</summary>
public sealed class Linear : Module
{
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

    public int InFeatures { get; }
    public int OutFeatures { get; }
    public Tensor<float> Weight { get; }
    public Tensor<float>? Bias { get; }

    /// <summary>x [B, in] → [B, out].</summary>
    public Tensor<float> Forward(Tensor<float> x) => Op.Linear(x, Weight, Bias);
}
