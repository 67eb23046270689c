using System.Diagnostics;
using KdEngine.Models;
using KdEngine.Nn;
using KdEngine.Serving;
using NUnit.Framework;

namespace KdEngine.Tests.Hardening;

/// <summary>A checkpoint save killed midway (a real child process, SIGKILL) leaves the previous checkpoint intact.</summary>
[TestFixture]
public sealed class CrashSafeSaveTests
{
    [Test]
    public void Killing_a_process_in_the_middle_of_a_save_keeps_the_previous_checkpoint()
    {
        string dir = Path.Combine(Path.GetTempPath(), "kdengine-crash", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string path = Path.Combine(dir, "model.safetensors");
            var model = new ZooModel(new ModelConfig { Model = ModelKind.Wdl, EmbeddingDim = 4, Dnn = [8] }, [new InputField("a", 9), new InputField("b", 5)]);
            ModelCheckpoint.Save(path, model);
            var before = File.ReadAllBytes(path);

            string dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
            var start = new ProcessStartInfo(dotnet)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            start.ArgumentList.Add(typeof(ChildProcess).Assembly.Location);
            start.ArgumentList.Add(ChildProcess.SlowWriterSwitch);
            start.ArgumentList.Add(path);
            using var child = Process.Start(start)!;
            var firstLine = child.StandardOutput.ReadLineAsync();
            Assert.That(firstLine.Wait(TimeSpan.FromSeconds(60)), Is.True, "the child never started writing: " + (child.HasExited ? child.StandardError.ReadToEnd() : ""));
            Assert.That(firstLine.Result, Is.EqualTo("writing"));
            var temp = Directory.GetFiles(dir, "model.safetensors.tmp-*");
            Assert.That(temp, Has.Length.EqualTo(1), "the bytes go to a temporary file");
            Thread.Sleep(100);
            child.Kill(entireProcessTree: true);
            Assert.That(child.WaitForExit(30_000), Is.True);
            Assert.That(child.ExitCode, Is.Not.Zero, "killed, not finished");

            // The half-written temporary file is shorter than a full write (16 MiB); the target never saw it.
            Assert.That(new FileInfo(temp[0]).Length, Is.LessThan(16L << 20));
            Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
            var loaded = ModelCheckpoint.Load(path).Model;
            Assert.That(loaded.Parameters().Select(p => p.Tensor.ToArray()), Is.EqualTo(model.Parameters().Select(p => p.Tensor.ToArray())));
            // A leftover temporary file (the killed process could not remove it) is not a valid checkpoint either.
            Assert.Throws<CheckpointFormatException>(() => SafeTensorsFile.Read(temp[0]));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
