"""Create an object only if it does not exist: S3's conditional write (``If-None-Match: *``).

pyarrow's filesystem has no exclusive create on object stores, so the output lock
(:mod:`pipelines.common.output_lock`) sends this one request with boto3, configured like the
pyarrow filesystem it comes from (endpoint, region, keys; otherwise the standard AWS chain).
AWS S3 has honoured the condition since August 2024; of two writers exactly one gets 200 and the
other 412 Precondition Failed (or 409 when they race inside S3).
"""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs

from pipelines.common.storage import Location


def _client(fs: pafs.S3FileSystem) -> Any:
    import boto3

    opts = fs.__reduce__()[1][0]  # the filesystem's constructor arguments (endpoint, region, keys)
    kwargs: dict[str, Any] = {}
    endpoint = opts.get("endpoint_override")
    if endpoint:
        kwargs["endpoint_url"] = endpoint if "://" in endpoint else f"{opts.get('scheme') or 'https'}://{endpoint}"
    if opts.get("region"):
        kwargs["region_name"] = opts["region"]
    if opts.get("access_key"):
        kwargs.update(aws_access_key_id=opts["access_key"], aws_secret_access_key=opts.get("secret_key"),
                      aws_session_token=opts.get("session_token") or None)
    return boto3.client("s3", **kwargs)


def put_if_absent(loc: Location, data: bytes) -> bool | None:
    """Write ``data`` to ``loc`` unless an object is already there, in one conditional request.

    Args:
        loc: an ``s3://`` location (bucket/key).
        data: the object's bytes.

    Returns:
        True when this call created the object, False when one existed (or another writer won
        the race), None when it cannot be done here: not S3, no boto3, or a store that does not
        implement the condition (501).

    Raises:
        botocore's ClientError for any other refusal (no bucket, no permission), named by S3.
    """
    if not isinstance(loc.fs, pafs.S3FileSystem):
        return None
    try:
        from botocore.exceptions import ClientError
    except ImportError:
        return None
    bucket, _, key = loc.path.partition("/")
    try:
        _client(loc.fs).put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = exc.response.get("Error", {}).get("Code")
        if status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
            return False
        if status == 501 or code == "NotImplemented":
            return None
        raise
    return True
