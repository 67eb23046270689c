namespace KdEngine.Serving;

/// <summary>
/// A checkpoint (or any safetensors file, such as cached teacher logits) is truncated, corrupt, from an
/// unsupported version, or does not match what the caller expects. The message starts with the file path and
/// names the tensor or key at fault.
/// </summary>
public sealed class CheckpointFormatException : Exception
{
    /// <summary>A checkpoint error; the message is <c><paramref name="filePath"/>: <paramref name="problem"/></c>.</summary>
    public CheckpointFormatException(string filePath, string problem, Exception? innerException = null)
        : base($"{filePath}: {problem}", innerException)
    {
        FilePath = filePath;
        Problem = problem;
    }

    /// <summary>The file as the caller named it.</summary>
    public string FilePath { get; }

    /// <summary>What is wrong, without the file name.</summary>
    public string Problem { get; }
}
