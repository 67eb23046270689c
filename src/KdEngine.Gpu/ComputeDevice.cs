using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using KdEngine.Backends;

namespace KdEngine.Gpu;

/// <summary>No accelerator of the requested kind exists on this machine (or its driver is missing).</summary>
public sealed class DeviceUnavailableException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Picks where tensors live and kernels run: <c>cpu</c> (the SIMD CPU backend), <c>cuda</c> (the first NVIDIA
/// GPU), <c>opencl</c> (the first OpenCL GPU) or <c>ilgpu-cpu</c> (ILGPU's CPU accelerator: a slow simulator
/// that runs the GPU kernels on the CPU, for tests). To run a model on a device, build and train it inside
/// <c>using (DefaultBackend&lt;float&gt;.Use(backend)) { … }</c>.
/// </summary>
public static class ComputeDevice
{
    /// <summary>The device names <see cref="Create"/> accepts.</summary>
    public static readonly IReadOnlyList<string> Names = ["cpu", "cuda", "opencl", "ilgpu-cpu"];

    /// <summary>
    /// The backend for <paramref name="device"/>. A GPU backend owns its accelerator: dispose it (it is an
    /// <see cref="IDisposable"/> <see cref="GpuBackend"/>) when done. Throws <see cref="DeviceUnavailableException"/>
    /// naming the device when none of that kind exists, and <see cref="ArgumentException"/> for an unknown name.
    /// </summary>
    public static IBackend<float> Create(string device)
    {
        ArgumentNullException.ThrowIfNull(device);
        switch (device.Trim().ToLowerInvariant())
        {
            case "cpu":
                return CpuBackend<float>.Instance;
            case "ilgpu-cpu":
            {
                var context = Context.Create(b => b.CPU().EnableAlgorithms());
                return new GpuBackend(context, context.CreateCPUAccelerator(0), "ilgpu-cpu", ownsContext: true);
            }
            case "cuda":
                return CreateFirst(b => b.Cuda(), AcceleratorType.Cuda, "cuda");
            case "opencl":
                return CreateFirst(b => b.OpenCL(), AcceleratorType.OpenCL, "opencl");
            default:
                throw new ArgumentException($"ComputeDevice: unknown device '{device}'; expected one of {string.Join(", ", Names)}.", nameof(device));
        }
    }

    /// <summary>True when <see cref="Create"/> would succeed for <paramref name="device"/> (checks for a device without keeping it).</summary>
    public static bool IsAvailable(string device, out string reason)
    {
        try
        {
            var backend = Create(device);
            (backend as IDisposable)?.Dispose();
            reason = "";
            return true;
        }
        catch (DeviceUnavailableException e)
        {
            reason = e.Message;
            return false;
        }
    }

    private static GpuBackend CreateFirst(Action<Context.Builder> configure, AcceleratorType type, string name)
    {
        Context context;
        try
        {
            context = Context.Create(b => { configure(b); b.EnableAlgorithms(); });
        }
        catch (Exception e)
        {
            throw new DeviceUnavailableException($"ComputeDevice '{name}': the {type} runtime could not be initialised ({e.GetType().Name}: {e.Message}).", e);
        }
        var device = context.Devices.FirstOrDefault(d => d.AcceleratorType == type);
        if (device is null)
        {
            context.Dispose();
            throw new DeviceUnavailableException($"ComputeDevice '{name}': no {type} device found on this machine (is the driver installed?).");
        }
        try
        {
            return new GpuBackend(context, device.CreateAccelerator(context), $"{name}:{device.Name}", ownsContext: true);
        }
        catch (Exception e)
        {
            context.Dispose();
            throw new DeviceUnavailableException($"ComputeDevice '{name}': creating an accelerator on {device.Name} failed ({e.GetType().Name}: {e.Message}).", e);
        }
    }
}
