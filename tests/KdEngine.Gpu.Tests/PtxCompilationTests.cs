using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using KdEngine.Backends;
using KdEngine.Gpu.Kernels;
using KdEngine.Ops;
using NUnit.Framework;

namespace KdEngine.Gpu.Tests;

/// <summary>
/// Compiles every device kernel to PTX (NVIDIA's GPU assembly) with ILGPU's PTX backend — no GPU or driver needed.
/// ILGPU's CPU accelerator runs kernels as .NET code, so the parity suite alone cannot show that a kernel (or an
/// operator struct's scalar math, e.g. generic <c>T.Exp</c>) is compilable for CUDA; this test can.
/// </summary>
[TestFixture]
public sealed class PtxCompilationTests
{
    private static IEnumerable<TestCaseData> Kernels()
    {
        static IEnumerable<MethodInfo> Of(Type t) => t.GetMethods(BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly);
        var unary = new[] { typeof(ReluOperator<float>), typeof(LeakyReluOperator<float>), typeof(SigmoidOperator<float>), typeof(TanhOperator<float>),
            typeof(ExpOperator<float>), typeof(LogOperator<float>), typeof(NegateOperator<float>), typeof(SquareOperator<float>), typeof(ScaleOperator<float>) };
        var binary = typeof(AddOperator<float>).Assembly.GetTypes()
            .Where(t => t.IsValueType && t.IsGenericTypeDefinition && t.GetInterfaces().Any(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IBinaryOperator<>)))
            .Select(t => t.MakeGenericType(typeof(float))).ToArray();
        var unaryAll = typeof(AddOperator<float>).Assembly.GetTypes()
            .Where(t => t.IsValueType && t.IsGenericTypeDefinition && t.GetInterfaces().Any(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IUnaryOperator<>)))
            .Select(t => t.MakeGenericType(typeof(float))).Union(unary).ToArray();
        foreach (var type in new[] { typeof(ElementwiseKernels), typeof(SoftmaxKernels), typeof(EmbeddingKernels), typeof(CinKernels), typeof(FfmKernels) })
            foreach (var m in Of(type))
            {
                if (!m.IsGenericMethodDefinition) { yield return new TestCaseData(m, false).SetName($"{type.Name}.{m.Name}"); continue; }
                bool isUnary = m.GetGenericArguments()[0].GetGenericParameterConstraints().Any(c => c.IsGenericType && c.GetGenericTypeDefinition() == typeof(IUnaryOperator<>));
                foreach (var op in isUnary ? unaryAll : binary)
                    yield return new TestCaseData(m.MakeGenericMethod(op), false).SetName($"{type.Name}.{m.Name}<{op.Name.TrimEnd('1', '`')}>");
            }
        yield return new TestCaseData(typeof(GemmKernels).GetMethod(nameof(GemmKernels.Tiled))!, true).SetName("GemmKernels.Tiled");
    }

    [TestCaseSource(nameof(Kernels))]
    public void CompilesToPtx(MethodInfo kernel, bool explicitlyGrouped) => Assert.That(Ptx(kernel, explicitlyGrouped), Does.Contain(".entry"));

    /// <summary>The operator struct's scalar T.Exp really becomes GPU code (ILGPU.Algorithms' exp via ex2), not a call into .NET.</summary>
    [Test]
    public void SigmoidOperatorsGenericExpBecomesDeviceMath()
    {
        var ptx = Ptx(typeof(ElementwiseKernels).GetMethod(nameof(ElementwiseKernels.Map))!.MakeGenericMethod(typeof(SigmoidOperator<float>)), false);
        Assert.That(ptx, Does.Contain("ex2"));
    }

    private static string Ptx(MethodInfo kernel, bool explicitlyGrouped)
    {
        using var context = Context.Create(b => b.CPU().EnableAlgorithms());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_80, null);
        var entry = explicitlyGrouped ? EntryPointDescription.FromExplicitlyGroupedKernel(kernel) : EntryPointDescription.FromImplicitlyGroupedKernel(kernel);
        return ((PTXCompiledKernel)backend.Compile(entry, default(KernelSpecialization))).PTXAssembly;
    }
}
