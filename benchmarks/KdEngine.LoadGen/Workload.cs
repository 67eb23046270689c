using System.Globalization;
using System.Text;
using KdEngine.Data;
using KdEngine.Pipelines;

namespace KdEngine.LoadGen;

/// <summary>
/// Ranking requests cut from Criteo rows: the "user context" is I1–I13 and C1–C13 of one row, each candidate C14–C26
/// of another row (Criteo's fields are anonymous; the split only has to be fixed). A request body and the raw records
/// the service builds from it (context overlaid by the candidate) are made together, so the in-process baseline and
/// the score checks see exactly the rows the service scores.
/// </summary>
internal sealed class Workload
{
    public sealed record Request(byte[] Body, RawRecord[] Records);

    private Workload(Request[] requests) => Requests = requests;

    public Request[] Requests { get; }

    public static Workload Build(string dataPath, int candidates, int count, int seed)
    {
        var schema = Schema.Criteo();
        var rows = new DataSource(dataPath) { Format = DataFormat.Criteo }.Open().Take(20_000).Select(Copy).ToArray();
        if (rows.Length < 2) throw new InvalidOperationException($"{dataPath}: too few rows for a workload");
        var rng = new Random(seed);
        var requests = new Request[count];
        var contextFields = Enumerable.Range(1, 13).Select(i => "I" + i).Concat(Enumerable.Range(1, 13).Select(i => "C" + i)).ToArray();
        var itemFields = Enumerable.Range(14, 13).Select(i => "C" + i).ToArray();
        for (int q = 0; q < count; q++)
        {
            var context = rows[rng.Next(rows.Length)];
            var sb = new StringBuilder(64 * 1024);
            sb.Append("{\"context\":{");
            AppendFields(sb, schema, context, contextFields);
            sb.Append("},\"candidates\":[");
            var records = new RawRecord[candidates];
            for (int c = 0; c < candidates; c++)
            {
                var item = rows[rng.Next(rows.Length)];
                if (c > 0) sb.Append(',');
                sb.Append('{');
                AppendFields(sb, schema, item, itemFields);
                sb.Append('}');
                var r = new RawRecord(schema);
                foreach (var f in contextFields) Set(r, schema, f, context);
                foreach (var f in itemFields) Set(r, schema, f, item);
                records[c] = r;
            }
            sb.Append("]}");
            requests[q] = new Request(Encoding.UTF8.GetBytes(sb.ToString()), records);
        }
        return new Workload(requests);
    }

    private static string?[] Copy(RawRecord r) => (string?[])r.Values.Clone();

    /// <summary>Missing values are left out (every field is optional); numbers are sent as JSON numbers.</summary>
    private static void AppendFields(StringBuilder sb, Schema schema, string?[] row, string[] fields)
    {
        bool first = true;
        foreach (var name in fields)
        {
            var v = row[schema.IndexOf(name)];
            if (string.IsNullOrEmpty(v)) continue;
            if (!first) sb.Append(',');
            first = false;
            sb.Append('"').Append(name).Append("\":");
            if (schema[schema.IndexOf(name)].Kind == FieldKind.Numeric)
                sb.Append(double.Parse(v, CultureInfo.InvariantCulture).ToString("R", CultureInfo.InvariantCulture));
            else sb.Append('"').Append(v).Append('"');
        }
    }

    private static void Set(RawRecord r, Schema schema, string name, string?[] row)
    {
        int f = schema.IndexOf(name);
        var v = row[f];
        if (string.IsNullOrEmpty(v)) return;
        if (schema[f].Kind == FieldKind.Numeric) r.Numbers[f] = double.Parse(v, CultureInfo.InvariantCulture);
        else r.Values[f] = v;
    }
}
