using KdEngine.Cli;
using NUnit.Framework;

namespace KdEngine.Distributed.Tests;

/// <summary>The <c>--distributed</c> option without mpirun: bad modes, the single-process fallback, a missing libmpi.</summary>
[TestFixture]
public sealed class CliDistributedOptionTests
{
    private string _dir = "";
    private string _data = "";

    [OneTimeSetUp]
    public void MakeData()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kdengine-mpi-cli-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(_dir);
        _data = Path.Combine(_dir, "clicks.tsv");
        var o = new StringWriter();
        Assert.That(CliApp.Run(["synth", "--rows", "600", "--fields", "4", "--seed", "2", "--out", _data], o, o), Is.EqualTo(0), o.ToString());
    }

    [OneTimeTearDown]
    public void Clean()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    private string[] TrainArgs(string mode) =>
        ["train", "--model", "lr", "--data", _data, "--schema", _data + ".schema.json", "--epochs", "1", "--distributed", mode, "--out", Path.Combine(_dir, mode + ".kde")];

    [Test]
    public void UnknownMode_IsAnErrorNamingIt()
    {
        var o = new StringWriter();
        var e = new StringWriter();
        Assert.That(CliApp.Run(TrainArgs("foo"), o, e), Is.EqualTo(1));
        Assert.That(e.ToString(), Does.Contain("'--distributed': unknown mode 'foo' (expected none|mpi)"));
    }

    [Test]
    public void Mpi_WithoutMpirun_TrainsAsRank0Of1()
    {
        Assume.That(ProcessGroups.LaunchedByMpirun, Is.False, "this test process itself runs under mpirun");
        var o = new StringWriter();
        Assert.That(CliApp.Run(TrainArgs("mpi"), o, o), Is.EqualTo(0), o.ToString());
        Assert.That(o.ToString(), Does.Contain("not started by mpirun; training as rank 0 of 1").And.Contain("saved"));
        Assert.That(File.Exists(Path.Combine(_dir, "mpi.kde")));
    }

    [Test]
    public void Mpirun_WithoutLibmpi_IsAClearError()
    {
        // What mpirun sets, with the library pointed at a file that does not exist: the process must say so and exit.
        var env = new Dictionary<string, string> { ["OMPI_COMM_WORLD_SIZE"] = "2", ["KDENGINE_MPI_LIBRARY"] = Path.Combine(_dir, "no", "libmpi.so.40") };
        var job = MpiJob.RunAlone(TimeSpan.FromSeconds(60), env, ["cli", .. TrainArgs("mpi")]);
        Assert.That(job.ExitCode, Is.EqualTo(1), job.Output);
        Assert.That(job.Output, Does.Contain("error: --distributed mpi: this process was started by mpirun, but Open MPI's library").And.Contain("could not be loaded").And.Contain("apt-get install openmpi-bin"));
    }
}
