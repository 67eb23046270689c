namespace KdEngine.Server.Api;

/// <summary>
/// A request the service refuses, with the HTTP status and a stable <see cref="Code"/>; for bad values also the field
/// and where it was (<c>context</c>, <c>candidates</c> or <c>instances</c>, with the row index). Rendered as
/// <c>{"error": {"status": 400, "code": "wrong_type", "message": "candidates[3].C7: …", "field": "C7", "candidate": 3}}</c>.
/// </summary>
public sealed class RequestException(int status, string code, string message, string? field = null, string? location = null, int? index = null)
    : Exception(message)
{
    public int Status { get; } = status;

    public string Code { get; } = code;

    public string? Field { get; } = field;

    /// <summary><c>context</c>, <c>candidates</c> or <c>instances</c>; null when the error is not about one object.</summary>
    public string? Location { get; } = location;

    /// <summary>Index in <see cref="Location"/>'s array (candidates/instances).</summary>
    public int? Index { get; } = index;
}

/// <summary>The stable error codes (documented in docs/serving.md).</summary>
public static class ErrorCodes
{
    public const string MalformedJson = "malformed_json";
    public const string BadRequest = "bad_request";
    public const string UnknownField = "unknown_field";
    public const string WrongType = "wrong_type";
    public const string MultiValueInSingleField = "multi_value_in_single_field";
    public const string BadValue = "bad_value";
    public const string DuplicateField = "duplicate_field";
    public const string TooManyCandidates = "too_many_candidates";
    public const string BodyTooLarge = "body_too_large";
    public const string UnknownModel = "unknown_model";
    public const string NotReady = "not_ready";
    public const string QueueFull = "queue_full";
    public const string Timeout = "timeout";
    public const string CheckpointRefused = "checkpoint_refused";
    public const string NotFound = "not_found";
    public const string InternalError = "internal_error";
}
