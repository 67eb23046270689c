using System.Buffers;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using KdEngine.Autograd;
using KdEngine.Backends;
using KdEngine.Gpu.Kernels;
using KdEngine.Tensors;

namespace KdEngine.Gpu;

/// <summary>
/// The ILGPU backend (float32 only): tensor storages are pooled device buffers (<see cref="GpuStorage"/>) on one
/// ILGPU <see cref="Accelerator"/> — CUDA, OpenCL, or ILGPU's CPU accelerator (a simulator, for tests) — and every
/// primitive of <see cref="IBackend{T}"/> is a device kernel compiled once and cached. Elementwise kernels are
/// generic over the core's operator structs (<see cref="UnaryKernels{TOp}"/>), so ops keep one copy of their math.
/// GEMM goes to cuBLAS on CUDA and to a tiled shared-memory kernel elsewhere.
/// </summary>
/// <remarks>
/// <para>Everything runs in order on the accelerator's default stream; <see cref="Download"/> (e.g. a loss's
/// <c>Item()</c>) is the synchronisation point, and there the device-side embedding bounds checks of every gather
/// since the last synchronisation are read back (one small transfer) and a bad id is raised as a
/// <see cref="DeviceIdOutOfRangeException"/>.</para>
/// <para>Transfers: host → device for <see cref="Upload"/>, for the ids of each gather (the batch's inputs) and for
/// <see cref="UploadRows"/>; device → host for <see cref="Download"/>, <see cref="FirstNonFinite"/> (one int) and
/// the row-sparse embedding backward (<see cref="ScatterAddRowsSparse"/>: the touched gradient rows go to the
/// host-side <see cref="SparseRowGradient{T}"/>, at the end of the backward pass).</para>
/// <para>Not thread-safe: one backend serves one training or inference loop at a time.</para>
/// </remarks>
public sealed partial class GpuBackend : IBackend<float>, IDisposable
{
    private const int MaxPendingChecks = 4096;

    private readonly Context _context;
    private readonly bool _ownsContext;
    private readonly CuBlas? _cuBlas;
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _errors;   // one slot per gather since the last check
    private readonly MemoryBuffer1D<int, Stride1D.Dense> _scalarInt; // FirstNonFinite's result
    private readonly List<PendingCheck> _pending = new();
    private MemoryBuffer1D<int, Stride1D.Dense> _idsA, _idsB;
    private MemoryBuffer1D<float, Stride1D.Dense> _floatScratch;
    private bool _disposed;

    private readonly record struct PendingCheck(string Op, TensorStorage<float> Table, int Rows, int[] Ids, int Count);

    /// <summary>Wraps an accelerator created on <paramref name="context"/>; disposing the backend disposes both when <paramref name="ownsContext"/>.</summary>
    public GpuBackend(Context context, Accelerator accelerator, string name, bool ownsContext)
    {
        _context = context;
        _ownsContext = ownsContext;
        Accelerator = accelerator;
        Name = name;
        Pool = new DevicePool<float>(accelerator);
        if (accelerator is CudaAccelerator cuda)
        {
            try
            {
                _cuBlas = new CuBlas(cuda);
                _cuBlas.Stream = (CudaStream)cuda.DefaultStream; // keep GEMMs ordered with our kernels
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException or BadImageFormatException)
            {
                // ILGPU.Algorithms binds libcublas.so.10–12 by name; without one, GEMM runs on the tiled kernel.
                _cuBlas = null;
                CuBlasUnavailableReason = e.GetBaseException().Message;
            }
        }
        _errors = accelerator.Allocate1D<int>(MaxPendingChecks);
        _scalarInt = accelerator.Allocate1D<int>(1);
        _idsA = accelerator.Allocate1D<int>(1024);
        _idsB = accelerator.Allocate1D<int>(1024);
        _floatScratch = accelerator.Allocate1D<float>(1024);
        K = new KernelSet(accelerator);
        K.FillInt(MaxPendingChecks, _errors.View, int.MaxValue);
    }

    /// <summary>The ILGPU accelerator every kernel of this backend runs on.</summary>
    public Accelerator Accelerator { get; }
    /// <inheritdoc/>
    public string Name { get; }

    /// <summary>True when GEMMs go to cuBLAS (a CUDA accelerator).</summary>
    public bool UsesCuBlas => _cuBlas is not null;

    /// <summary>Why cuBLAS could not be loaded on a CUDA device (null when it was, or on other accelerators).</summary>
    public string? CuBlasUnavailableReason { get; }

    internal DevicePool<float> Pool { get; }
    private KernelSet K { get; }

    private static ArrayView<float> V(TensorStorage<float> s) => s is GpuStorage g
        ? g.View
        : throw new ArgumentException($"GpuBackend: a storage of backend '{s.Backend.Name}' was passed to a GPU kernel; move tensors to one device first.");

    private static ArrayView<float> V(TensorStorage<float> s, int length) => V(s).SubView(0, length);

    /// <inheritdoc/>
    public TensorStorage<float> Allocate(int length, bool clear)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        var buffer = Pool.Rent(length);
        var storage = new GpuStorage(this, buffer, length);
        if (clear && length > 0) storage.View.MemSetToZero();
        return storage;
    }

    /// <inheritdoc/>
    public void Upload(ReadOnlySpan<float> source, TensorStorage<float> destination)
    {
        if (source.Length > destination.Length)
            throw new ArgumentException($"Upload: {source.Length} values do not fit a storage of {destination.Length}.");
        if (source.Length > 0) V(destination, source.Length).CopyFromCPU(source);
    }

    /// <inheritdoc/>
    public void Download(TensorStorage<float> source, Span<float> destination)
    {
        if (destination.Length > source.Length)
            throw new ArgumentException($"Download: {destination.Length} values requested from a storage of {source.Length}.");
        if (destination.Length > 0) V(source, destination.Length).CopyToCPU(destination);
        CheckDeviceErrors();
    }

    /// <inheritdoc/>
    public void Copy(TensorStorage<float> source, int sourceOffset, TensorStorage<float> destination, int destinationOffset, int length)
    {
        if (length > 0) V(source).SubView(sourceOffset, length).CopyTo(V(destination).SubView(destinationOffset, length));
    }

    /// <inheritdoc/>
    public void Fill(TensorStorage<float> destination, float value)
    {
        if (destination.Length > 0) K.Fill(destination.Length, V(destination), value);
    }

    /// <inheritdoc/>
    public void Axpy(float alpha, TensorStorage<float> x, TensorStorage<float> y, int length)
    {
        if (length > 0) K.Axpy(length, V(x), V(y), alpha);
    }

    /// <inheritdoc/>
    public void Map<TOp>(TensorStorage<float> x, TensorStorage<float> y, int length, float p) where TOp : IUnaryOperator<float>
    {
        if (length > 0) UnaryKernels<TOp>.For(Accelerator).Map(length, V(x), V(y), p);
    }

    /// <inheritdoc/>
    public void MapBackward<TOp>(TensorStorage<float> x, TensorStorage<float> y, TensorStorage<float> gradY, TensorStorage<float> gradX, int length, float p)
        where TOp : IUnaryOperator<float>
    {
        if (length > 0) UnaryKernels<TOp>.For(Accelerator).Backward(length, V(x), V(y), V(gradY), V(gradX), p);
    }

    /// <inheritdoc/>
    public void Map2<TOp>(TensorStorage<float> a, TensorStorage<float> b, TensorStorage<float> z, int length, int period) where TOp : IBinaryOperator<float>
    {
        if (length > 0) BinaryKernels<TOp>.For(Accelerator).Map(length, V(a), V(b), V(z), period);
    }

    /// <inheritdoc/>
    public void Map2Backward<TOp>(TensorStorage<float> a, TensorStorage<float> b, TensorStorage<float> gradZ,
        TensorStorage<float>? gradA, TensorStorage<float>? gradB, int length, int period) where TOp : IBinaryOperator<float>
    {
        if (length == 0) return;
        var k = BinaryKernels<TOp>.For(Accelerator);
        if (gradA is not null) k.BackwardA(length, V(a), V(b), V(gradZ), V(gradA), period);
        if (gradB is not null) k.BackwardB(period, V(a), V(b), V(gradZ), V(gradB), period, length / period);
    }

    /// <inheritdoc/>
    public void SumAxis(TensorStorage<float> x, TensorStorage<float> y, int outer, int axis, int inner, bool accumulate)
    {
        if (outer * inner > 0) K.SumAxis(outer * inner, V(x), V(y), axis, inner, accumulate ? 1 : 0);
    }

    /// <inheritdoc/>
    public void BroadcastAxisAdd(TensorStorage<float> x, TensorStorage<float> y, int outer, int axis, int inner, float scale)
    {
        int n = outer * axis * inner;
        if (n > 0) K.BroadcastAxisAdd(n, V(x), V(y), axis, inner, scale);
    }

    /// <inheritdoc/>
    public void Softmax(TensorStorage<float> x, TensorStorage<float> y, int outer, int axis, int inner, float invTemperature, bool log)
    {
        if (outer * inner > 0 && axis > 0) K.Softmax(outer * inner, V(x), V(y), axis, inner, invTemperature, log ? 1 : 0);
    }

    /// <inheritdoc/>
    public void SoftmaxBackward(TensorStorage<float> y, TensorStorage<float> gradY, TensorStorage<float> gradX,
        int outer, int axis, int inner, float invTemperature, bool log)
    {
        if (outer * inner > 0 && axis > 0) K.SoftmaxBackward(outer * inner, V(y), V(gradY), V(gradX), axis, inner, invTemperature, log ? 1 : 0);
    }

    /// <inheritdoc/>
    public void CopyBlocks(TensorStorage<float> source, int sourceOffset, int sourceStride,
        TensorStorage<float> destination, int destinationOffset, int destinationStride, int blockLength, int blockCount, bool accumulate)
    {
        int n = blockLength * blockCount;
        if (n > 0)
            K.CopyBlocks(n, V(source), sourceOffset, sourceStride, V(destination), destinationOffset, destinationStride, blockLength, accumulate ? 1 : 0);
    }

    /// <inheritdoc/>
    public int FirstNonFinite(TensorStorage<float> x, int length)
    {
        if (length == 0) return -1;
        K.FillInt(1, _scalarInt.View, int.MaxValue);
        K.FirstNonFinite(length, V(x), _scalarInt.View);
        Span<int> r = stackalloc int[1];
        ((ArrayView<int>)_scalarInt.View).CopyToCPU(r);
        return r[0] == int.MaxValue ? -1 : r[0];
    }

    /// <inheritdoc/>
    public void DropoutMask(TensorStorage<float> mask, int length, double rate, ulong seed)
    {
        if (length > 0) K.DropoutMask(length, V(mask), rate, seed, (float)(1.0 / (1.0 - rate)));
    }

    /// <inheritdoc/>
    public void Gemm(bool transposeA, bool transposeB, int m, int n, int k, float alpha,
        TensorStorage<float> a, TensorStorage<float> b, float beta, TensorStorage<float> c)
    {
        if (m == 0 || n == 0) return;
        if (k == 0)
        {
            // C = beta·C (no product terms); beta = 0 clears C without reading it.
            if (beta == 0f) K.Fill(m * n, V(c), 0f);
            else UnaryKernels<Ops.ScaleOperator<float>>.For(Accelerator).Map(m * n, V(c), V(c), beta);
            return;
        }
        if (_cuBlas is not null)
        {
            // cuBLAS is column-major. Row-major C [m, n] is column-major Cᵀ [n, m], and Cᵀ = op(B)ᵀ·op(A)ᵀ: so pass B
            // before A with the same transpose flags. Row-major B [k, n] is column-major [n, k] (ld = n), stored
            // [n, k] when transposed (ld = k); likewise A with ld = k, or m when transposed.
            _cuBlas.Gemm(transposeB ? CuBlasOperation.Transpose : CuBlasOperation.NonTranspose,
                transposeA ? CuBlasOperation.Transpose : CuBlasOperation.NonTranspose,
                n, m, k, alpha, V(b, k * n), transposeB ? k : n, V(a, m * k), transposeA ? m : k, beta, V(c, m * n), n);
            return;
        }
        int t = K.GemmTile;
        K.Gemm(new KernelConfig(new Index2D((n + t - 1) / t, (m + t - 1) / t), new Index2D(t, t)),
            V(a), V(b), V(c), m, n, k, alpha, beta, transposeA ? 1 : 0, transposeB ? 1 : 0, t);
    }

    /// <inheritdoc/>
    public void FieldOuterProduct(TensorStorage<float> h, TensorStorage<float> x0, TensorStorage<float> z, int first, int samples,
        int hRows, int fields, int width, int sampleStride, int rowStride)
    {
        int n = samples * hRows * fields * width;
        if (n > 0) K.OuterProduct(n, V(h), V(x0), V(z), first, hRows, fields, width, sampleStride, rowStride);
    }

    /// <inheritdoc/>
    public void FieldOuterProductBackward(TensorStorage<float> h, TensorStorage<float> x0, TensorStorage<float> gradZ,
        TensorStorage<float>? gradH, TensorStorage<float>? gradX0, int first, int samples,
        int hRows, int fields, int width, int sampleStride, int rowStride)
    {
        if (samples * width == 0) return;
        // Two passes, each thread owning one output element (no atomics). When gradH and gradX0 are the same
        // storage the second pass reads only h, x0 and gradZ, so the first pass's writes do not disturb it.
        if (gradH is not null && hRows > 0)
            K.OuterBackwardH(samples * hRows * width, V(x0), V(gradZ), V(gradH), first, hRows, fields, width, sampleStride, rowStride);
        if (gradX0 is not null && fields > 0)
            K.OuterBackwardX0(samples * fields * width, V(h), V(gradZ), V(gradX0), first, hRows, fields, width, sampleStride, rowStride);
    }

    /// <inheritdoc/>
    public void FieldAwarePairs(TensorStorage<float> x, TensorStorage<float> z, int batch, int fields, int width)
    {
        if (batch > 0) K.FfmForward(batch, V(x), V(z), fields, width);
    }

    /// <inheritdoc/>
    public void FieldAwarePairsBackward(TensorStorage<float> x, TensorStorage<float> gradZ, TensorStorage<float> gradX, int batch, int fields, int width)
    {
        int n = batch * fields * (fields - 1) * width;
        if (n > 0) K.FfmBackward(n, V(x), V(gradZ), V(gradX), fields, width);
    }

    /// <inheritdoc/>
    public void TransposeBlocks(TensorStorage<float> x, int xOffset, TensorStorage<float> y, int yOffset, int rows, int cols, int inner, bool accumulate)
    {
        int n = rows * cols * inner;
        if (n > 0) K.TransposeBlocks(n, V(x), xOffset, V(y), yOffset, rows, cols, inner, accumulate ? 1 : 0);
    }

    /// <inheritdoc/>
    public void ScaleRows(TensorStorage<float> x, TensorStorage<float> s, TensorStorage<float> y, int rows, int width)
    {
        if (rows * width > 0) K.ScaleRows(rows * width, V(x), V(s), V(y), width);
    }

    /// <inheritdoc/>
    public void ScaleRowsBackward(TensorStorage<float> x, TensorStorage<float> s, TensorStorage<float> gradY,
        TensorStorage<float>? gradX, TensorStorage<float>? gradS, int rows, int width)
    {
        if (rows * width == 0) return;
        if (gradX is not null) K.ScaleRowsBackwardX(rows * width, V(gradY), V(s), V(gradX), width);
        if (gradS is not null) K.ScaleRowsBackwardS(rows, V(gradY), V(x), V(gradS), width);
    }

    /// <summary>Waits for all queued device work and raises any pending device-side error.</summary>
    public void Synchronize()
    {
        Accelerator.Synchronize();
        CheckDeviceErrors();
    }

    /// <summary>The backend and accelerator names, for logs.</summary>
    public override string ToString() => $"GpuBackend '{Name}' ({Accelerator.Name})";

    /// <summary>Frees the device memory pool, the cuBLAS handle and the accelerator; tensors of this backend must not be used afterwards.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var p in _pending) ArrayPool<int>.Shared.Return(p.Ids);
        _pending.Clear();
        Pool.Dispose();
        _errors.Dispose();
        _scalarInt.Dispose();
        _idsA.Dispose();
        _idsB.Dispose();
        _floatScratch.Dispose();
        _cuBlas?.Dispose();
        Accelerator.Dispose();
        if (_ownsContext) _context.Dispose();
    }
}
