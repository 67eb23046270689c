namespace KdEngine.Server.Api;

/// <summary>
/// A request the service refuses, with the HTTP status and a stable <see cref="Code"/>; for bad values also the field
/// and where it was (<c>context</c>, <c>candidates</c> or <c>instances</c>, with the row index). Rendered as
/// <c>{"error": {"status": 400, "code": "wrong_type", "message": "candidates[3].C7: …", "field": "C7", "candidate": 3}}</c>.
/// </summary>
public sealed class RequestException(int status, string code, string message, string? field = null, string? location = null, int? index = null)
    : Exception(message)
{
    /// <summary>The HTTP status code of the answer (400, 404, 413, 422, 429, 503, 500).</summary>
    public int Status { get; } = status;

    /// <summary>The stable machine-readable code (one of <see cref="ErrorCodes"/>).</summary>
    public string Code { get; } = code;

    /// <summary>The request field at fault, when the error is about one.</summary>
    public string? Field { get; } = field;

    /// <summary><c>context</c>, <c>candidates</c> or <c>instances</c>; null when the error is not about one object.</summary>
    public string? Location { get; } = location;

    /// <summary>Index in <see cref="Location"/>'s array (candidates/instances).</summary>
    public int? Index { get; } = index;
}

/// <summary>The stable error codes (documented in docs/serving.md).</summary>
public static class ErrorCodes
{
    /// <summary>400: not JSON, truncated, or content after the object.</summary>
    public const string MalformedJson = "malformed_json";
    /// <summary>400: a well-formed body of the wrong shape (not an object, an unknown top-level key, …).</summary>
    public const string BadRequest = "bad_request";
    /// <summary>400: a field the model's schema does not know.</summary>
    public const string UnknownField = "unknown_field";
    /// <summary>400: a value of a type the field's kind does not take.</summary>
    public const string WrongType = "wrong_type";
    /// <summary>400: a list in a categorical or numeric field.</summary>
    public const string MultiValueInSingleField = "multi_value_in_single_field";
    /// <summary>400: a value out of range or holding the field's separator.</summary>
    public const string BadValue = "bad_value";
    /// <summary>400: the same field twice in one object.</summary>
    public const string DuplicateField = "duplicate_field";
    /// <summary>413: more rows than the configured maximum.</summary>
    public const string TooManyCandidates = "too_many_candidates";
    /// <summary>413: a body over the configured maximum size.</summary>
    public const string BodyTooLarge = "body_too_large";
    /// <summary>404: no model of that name is served.</summary>
    public const string UnknownModel = "unknown_model";
    /// <summary>503: the model is still loading, or the service is shutting down.</summary>
    public const string NotReady = "not_ready";
    /// <summary>429: the model's queue is full.</summary>
    public const string QueueFull = "queue_full";
    /// <summary>503: no answer within the request timeout.</summary>
    public const string Timeout = "timeout";
    /// <summary>422: a reload's checkpoint was refused; the previous version keeps serving.</summary>
    public const string CheckpointRefused = "checkpoint_refused";
    /// <summary>404: no such endpoint.</summary>
    public const string NotFound = "not_found";
    /// <summary>500: a failure inside the service (logged with its stack trace).</summary>
    public const string InternalError = "internal_error";
}
