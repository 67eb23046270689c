namespace KdEngine.Server.Api;

/// <summary>
/// A request the service refuses, with the HTTP status and a stable <see cref="Code"/>; for bad values also the field
/// and where it was (<c>context</c>, <c>candidates</c> or <c>instances</c>, with the row index). Rendered as
/// <c>{"error": {"status": 400, "code": "wrong_type", "message": "candidates[3].C7: …", "field": "C7", "candidate": 3}}</c>.
/// </summary>
public sealed class RequestException(int status, string code, string message, string? field = null, string? location = null, int? index = null)
    : Exception(message)
{
    /// <summary>The HTTP status to answer with.</summary>
    public int Status { get; } = status;

    /// <summary>The machine-readable error code (one of <see cref="ErrorCodes"/>).</summary>
    public string Code { get; } = code;

    /// <summary>The request field at fault, when there is one.</summary>
    public string? Field { get; } = field;

    /// <summary><c>context</c>, <c>candidates</c> or <c>instances</c>; null when the error is not about one object.</summary>
    public string? Location { get; } = location;

    /// <summary>Index in <see cref="Location"/>'s array (candidates/instances).</summary>
    public int? Index { get; } = index;
}

/// <summary>The stable error codes (documented in docs/serving.md).</summary>
public static class ErrorCodes
{
    /// <summary>The body is not well-formed JSON.</summary>
    public const string MalformedJson = "malformed_json";
    /// <summary>The JSON is well-formed but not a valid request.</summary>
    public const string BadRequest = "bad_request";
    /// <summary>A field the model's preprocessing does not know.</summary>
    public const string UnknownField = "unknown_field";
    /// <summary>A value of the wrong JSON type for its field.</summary>
    public const string WrongType = "wrong_type";
    /// <summary>Several values given for a single-valued field.</summary>
    public const string MultiValueInSingleField = "multi_value_in_single_field";
    /// <summary>A value the field cannot take (e.g. not finite).</summary>
    public const string BadValue = "bad_value";
    /// <summary>The same field given twice.</summary>
    public const string DuplicateField = "duplicate_field";
    /// <summary>More candidates than one request may carry.</summary>
    public const string TooManyCandidates = "too_many_candidates";
    /// <summary>The body exceeds the size limit.</summary>
    public const string BodyTooLarge = "body_too_large";
    /// <summary>No model is served under that name.</summary>
    public const string UnknownModel = "unknown_model";
    /// <summary>The service is not ready (models loading or draining).</summary>
    public const string NotReady = "not_ready";
    /// <summary>The model's queue is full; retry later.</summary>
    public const string QueueFull = "queue_full";
    /// <summary>The request was not scored within its deadline.</summary>
    public const string Timeout = "timeout";
    /// <summary>A reload found the new checkpoint unusable; the old version keeps serving.</summary>
    public const string CheckpointRefused = "checkpoint_refused";
    /// <summary>No such endpoint.</summary>
    public const string NotFound = "not_found";
    /// <summary>An unexpected failure inside the service.</summary>
    public const string InternalError = "internal_error";
}
