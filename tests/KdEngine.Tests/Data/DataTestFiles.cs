using KdEngine.Data;

namespace KdEngine.Tests.Data;

/// <summary>Fixture paths and throw-away files for the data tests.</summary>
internal static class DataTestFiles
{
    public static string Fixture(string name)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "Data", "Fixtures", name);
        if (!File.Exists(path)) throw new FileNotFoundException($"test fixture {name} was not copied to {path}");
        return path;
    }

    /// <summary>Writes <paramref name="content"/> verbatim to a new file called <paramref name="name"/> in a fresh temp folder.</summary>
    public static string Temp(string name, string content)
    {
        var dir = Path.Combine(Path.GetTempPath(), "kdengine-data-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, name);
        File.WriteAllText(path, content);
        return path;
    }

    public static Schema SmallSchema() => new([
        FieldSpec.Label(),
        FieldSpec.Numeric("n"),
        FieldSpec.Categorical("c"),
    ]);
}
