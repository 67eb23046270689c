using KdEngine.Data;
using KdEngine.Nn;
using KdEngine.Ops;

namespace KdEngine.Models;

/// <summary>Maps a fitted <see cref="FeatureSpace"/> to model input fields and the batch columns they read.</summary>
public static class ModelInputs
{
    /// <summary>
    /// Every model-input field of the space, in schema order: single-valued fields read their id column
    /// (scaled by their dense value when they carry one); multi-valued fields read their bag column.
    /// </summary>
    public static (InputField[] Fields, int[] Columns, bool[] Privileged) From(FeatureSpace space)
    {
        var fields = new List<InputField>();
        var columns = new List<int>();
        var privileged = new List<bool>();
        foreach (var f in space.Fields)
        {
            fields.Add(new InputField(f.Name, f.Cardinality)
            {
                IsMultiValued = f.IsMultiValued,
                Pooling = f.Pooling == Pooling.Mean ? PoolingMode.Mean : PoolingMode.Sum,
                ScaleByValue = f.HasDenseValue,
            });
            columns.Add(f.Slot);
            privileged.Add(f.Privileged);
        }
        return (fields.ToArray(), columns.ToArray(), privileged.ToArray());
    }

    /// <summary>
    /// The batch column of each field when the fields are a feature space's in schema order: single-valued fields
    /// take id columns 0, 1, … and multi-valued fields take bag columns 0, 1, … in the order they appear.
    /// </summary>
    public static int[] ColumnsOf(IReadOnlyList<InputField> fields)
    {
        var columns = new int[fields.Count];
        int single = 0, multi = 0;
        for (int i = 0; i < fields.Count; i++) columns[i] = fields[i].IsMultiValued ? multi++ : single++;
        return columns;
    }
}
