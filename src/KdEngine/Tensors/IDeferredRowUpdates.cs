namespace KdEngine.Tensors;

/// <summary>
/// Updates an embedding table owes its rows but has not written yet: an optimizer that applies weight decay (or
/// FTRL's step-scaled regularisation) to every row every step does it lazily, in closed form, for a row only when
/// the row is read or updated. A table carrying one (<see cref="Tensor{T}.DeferredRows"/>) is brought up to date by
/// every reader: the embedding ops bring the rows they gather (<see cref="Apply"/>), and whole-table readers
/// (<see cref="Tensor{T}.ToArray"/>, checkpoints, the predictor, training snapshots) bring every row
/// (<see cref="ApplyAll"/>). Writes are the owner's business.
/// </summary>
public interface IDeferredRowUpdates
{
    /// <summary>Brings rows <c>ids[0], ids[stride], …</c> (<paramref name="count"/> of them) up to date.</summary>
    void Apply(ReadOnlySpan<int> ids, int stride, int count);

    /// <summary>Brings every row up to date (O(table); a no-op when nothing is pending).</summary>
    void ApplyAll();
}
