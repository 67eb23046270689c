using KdEngine.Serving;

namespace KdEngine.Tests.Hardening;

/// <summary>
/// Entry point of the test assembly (the test SDK's generated one is switched off in the project file). Under
/// <c>dotnet test</c> it is never called; the crash-safe-save test starts <c>dotnet KdEngine.Tests.dll
/// --slow-checkpoint-writer PATH</c> to get a process it can kill in the middle of a checkpoint write.
/// </summary>
public static class ChildProcess
{
    public const string SlowWriterSwitch = "--slow-checkpoint-writer";

    public static int Main(string[] args)
    {
        if (args is [SlowWriterSwitch, var path]) return SlowWriter(path);
        Console.Error.WriteLine($"KdEngine.Tests: run with 'dotnet test'; the only command line is {SlowWriterSwitch} PATH.");
        return 2;
    }

    /// <summary>Writes a 16 MiB checkpoint over <paramref name="path"/> slowly (64 KiB every 20 ms), announcing the first write.</summary>
    private static int SlowWriter(string path)
    {
        var data = new float[4 << 20];
        for (int i = 0; i < data.Length; i++) data[i] = i;
        SafeTensorsFile.Write(path, [NamedArray.Float32("big", data, data.Length)], new Dictionary<string, string> { ["writer"] = "child" },
            s => new SlowStream(s));
        Console.Out.WriteLine("finished");
        return 0;
    }

    private sealed class SlowStream(Stream inner) : Stream
    {
        private bool _announced;
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            for (int at = 0; at < buffer.Length; at += 1 << 16)
            {
                inner.Write(buffer.Slice(at, Math.Min(1 << 16, buffer.Length - at)));
                inner.Flush();
                if (!_announced) { _announced = true; Console.Out.WriteLine("writing"); Console.Out.Flush(); }
                Thread.Sleep(20);
            }
        }
    }
}
