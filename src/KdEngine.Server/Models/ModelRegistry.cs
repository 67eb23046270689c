using KdEngine.Server.Batching;
using KdEngine.Server.Metrics;

namespace KdEngine.Server.Models;

/// <summary>
/// One served model name: the version now serving (swapped atomically by <see cref="ModelRegistry.ReloadAsync"/>), its
/// checkpoint path and its batcher (shared by all versions; a batch never mixes them).
/// </summary>
public sealed class ServedModel
{
    private ModelVersion? _current;

    internal ServedModel(string name, string path, DynamicBatcher batcher)
    {
        Name = name;
        Path = path;
        Batcher = batcher;
    }

    /// <summary>The model's name in the API (<c>/v1/models/{name}</c>).</summary>
    public string Name { get; }

    /// <summary>The checkpoint file a reload reads (replace the file, then reload).</summary>
    public string Path { get; }

    /// <summary>The serving version, or null until the first load and warm-up have finished.</summary>
    public ModelVersion? Current => Volatile.Read(ref _current);

    /// <summary>The model's batcher (shared by all its versions).</summary>
    public DynamicBatcher Batcher { get; }

    internal SemaphoreSlim ReloadLock { get; } = new(1, 1);

    internal void Swap(ModelVersion next) => Volatile.Write(ref _current, next);
}

/// <summary>The outcome of a reload: the version now serving and the one it replaced.</summary>
public sealed record ReloadOutcome(ModelVersion Current, ModelVersion Previous);

/// <summary>
/// The served models. At start every model is loaded and warmed up in the background (<see cref="LoadAllAsync"/>):
/// the service is live at once and ready (<see cref="IsReady"/>) only when every model has answered its warm-up
/// prediction. A reload validates the new checkpoint beside the old one and swaps only if it passes; a request keeps
/// the version it started with.
/// </summary>
public sealed class ModelRegistry : IDisposable
{
    private readonly Dictionary<string, ServedModel> _models;
    private readonly ServerOptions _options;
    private readonly ServerMetrics _metrics;
    private volatile bool _draining;
    private volatile string? _startupFailure;

    /// <summary>The registry of <c>options.Models</c>, each with its batcher (started here); the models are loaded by <see cref="LoadAllAsync"/>.</summary>
    public ModelRegistry(ServerOptions options, ServerMetrics metrics)
    {
        _options = options;
        _metrics = metrics;
        _models = new Dictionary<string, ServedModel>(StringComparer.Ordinal);
        foreach (var (name, path) in options.Models.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            _models[name] = new ServedModel(name, path, new DynamicBatcher(name, options.MaxBatchRows, options.MaxBatchWaitMicroseconds,
                options.EffectiveScoringThreads, options.MaxQueuedRequests, options.MaxCandidates, metrics));
    }

    /// <summary>Every served model.</summary>
    public IReadOnlyCollection<ServedModel> Models => _models.Values;

    /// <summary>The model called <paramref name="name"/>, when it is served.</summary>
    public bool TryGet(string name, out ServedModel model) => _models.TryGetValue(name, out model!);

    /// <summary>Every model serves a warmed-up version and the service is not draining.</summary>
    public bool IsReady => !_draining && _models.Values.All(m => m.Current is not null);

    /// <summary>Set on shutdown: readiness turns false so load balancers stop sending while in-flight requests finish.</summary>
    public void BeginDraining() => _draining = true;

    /// <summary>True once <see cref="BeginDraining"/> was called.</summary>
    public bool IsDraining => _draining;

    /// <summary>Why the start-up load failed (the service then stops), or null.</summary>
    public string? StartupFailure => _startupFailure;

    /// <summary>Test hook: awaited before each model's first load, so a test can watch the service before warm-up.</summary>
    internal Func<string, Task>? BeforeFirstLoad { get; set; }

    /// <summary>Loads and warms up every model (in name order). A refused checkpoint fails the start with its message.</summary>
    public async Task LoadAllAsync(CancellationToken cancellationToken = default)
    {
        foreach (var model in _models.Values)
        {
            if (BeforeFirstLoad is { } hook) await hook(model.Name).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                var version = await Task.Run(() => ModelLoader.Load(model.Name, model.Path, 1), cancellationToken).ConfigureAwait(false);
                model.Swap(version);
                _metrics.ModelVersion(model.Name, version.Version, version.ShortChecksum);
            }
            catch (ModelRefusedException e)
            {
                _startupFailure = e.Message;
                throw;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                _startupFailure = $"model '{model.Name}': unexpected {e.GetType().Name} while loading '{model.Path}': {e.Message}";
                throw new ModelRefusedException(_startupFailure, e);
            }
        }
    }

    /// <summary>
    /// Loads <paramref name="name"/>'s checkpoint file again beside the serving version; if it passes validation (checksums,
    /// preprocessing, input schema unless schema changes are allowed, finite warm-up) it becomes the serving version
    /// atomically. Requests already running finish on the old version. A refused file throws
    /// <see cref="ModelRefusedException"/> and changes nothing. Reloads of one model run one at a time.
    /// </summary>
    public async Task<ReloadOutcome> ReloadAsync(string name, CancellationToken cancellationToken = default)
    {
        if (!_models.TryGetValue(name, out var model)) throw new KeyNotFoundException($"no model '{name}'");
        await model.ReloadLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var previous = model.Current ?? throw new ModelRefusedException($"model '{name}' has not finished its first load; reload it once the service is ready");
            ModelVersion next;
            try
            {
                next = await Task.Run(() => ModelLoader.Load(name, model.Path, previous.Version + 1, previous, _options.AllowSchemaChange),
                    cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not ModelRefusedException and not OperationCanceledException)
            {
                // Never let a surprising failure in a loader take the service down: the old version keeps serving.
                throw new ModelRefusedException($"model '{name}': unexpected {e.GetType().Name} while loading '{model.Path}': {e.Message}", e);
            }
            model.Swap(next);
            _metrics.ModelVersion(name, next.Version, next.ShortChecksum);
            _metrics.Reload(name, accepted: true);
            return new ReloadOutcome(next, previous);
        }
        catch (ModelRefusedException)
        {
            _metrics.Reload(name, accepted: false);
            throw;
        }
        finally
        {
            model.ReloadLock.Release();
        }
    }

    /// <summary>Stops the batchers after they have scored what is queued (call once the server has stopped taking requests).</summary>
    public void Dispose()
    {
        foreach (var m in _models.Values) m.Batcher.Dispose();
    }
}
