namespace KdEngine.Data;

/// <summary>Locates data bundled with the repository (never outside it).</summary>
public static class DataPaths
{
    /// <summary>Path of the bundled sample, relative to the repository root.</summary>
    public const string CriteoSampleRelative = "data/criteo-sample/criteo_sampled_data_10k.csv";

    /// <summary>
    /// Finds <c>data/criteo-sample/criteo_sampled_data_10k.csv</c> by walking up from <see cref="AppContext.BaseDirectory"/>
    /// and then from the current directory; throws <see cref="FileNotFoundException"/> listing where it looked.
    /// </summary>
    public static string FindCriteoSample() => FindUp(CriteoSampleRelative);

    /// <summary>Walks up from the app base and the current directory looking for <paramref name="relativePath"/>.</summary>
    public static string FindUp(string relativePath)
    {
        ArgumentNullException.ThrowIfNull(relativePath);
        var starts = new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() };
        foreach (var start in starts)
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, relativePath);
                if (File.Exists(candidate)) return candidate;
            }
        }
        throw new FileNotFoundException(
            $"'{relativePath}' was not found in any parent of {string.Join(" or ", starts.Distinct())}. Run from inside the KdEngine repository.",
            relativePath);
    }
}
