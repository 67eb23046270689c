namespace KdEngine.Server.Batching;

/// <summary>
/// The click probability the service returns for a logit z: σ(z) = 1 / (1 + e^−z) in double precision, rounded once to
/// float — element by element, so a row's probability never depends on its position in a batch (a vectorised sigmoid
/// takes a different path for the tail of a span, which changes the last bit). <c>kdengine predict</c> writes the same
/// values, so the two agree bit for bit on rows scored in the same batches.
/// </summary>
public static class Probabilities
{
    /// <summary>σ(<paramref name="logit"/>) computed in double and rounded once to float.</summary>
    public static float FromLogit(float logit) => (float)(1.0 / (1.0 + Math.Exp(-(double)logit)));

    /// <summary>Replaces logits by probabilities in place.</summary>
    public static void FromLogits(Span<float> values)
    {
        for (int i = 0; i < values.Length; i++) values[i] = FromLogit(values[i]);
    }
}
